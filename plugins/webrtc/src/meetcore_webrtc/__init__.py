"""Deprecated: meetcore-webrtc was split into meetcore-server (the server, `meetcore
serve`), meetcore-media (the SFU) and meetcore-client (the Python client SDK). This
distribution installs all three, and keeps the old names that users imported as
aliases that warn: `meetcore_webrtc.client` (now `meetcore_client`),
`meetcore_webrtc.app` (now `meetcore_server.app`; its `Server` still takes a
`MediaConfig`), `meetcore_webrtc.testing` (now `meetcore_server.testing`),
`meetcore_webrtc.media` (now `meetcore_media.sfu`), `meetcore_webrtc.tracks` (now
`meetcore_media.tracks`) and `meetcore_webrtc.plugin` (the media hooks: now
`meetcore_media.plugin`; `meetcore serve` and the schemas are meetcore-server's plugin).
`MediaServer`'s own API changed with the split: `offer()` returns the answer's SDP and
its `send` gets `sdp.Offer`s, no longer the wire's `MediaAnswer` and `MediaOffer`.
The other old modules were private, or are now `meetcore_protocol` (`protocol`),
`meetcore_media.hookspecs` (`hookspecs`) and `meetcore_server.serve` (`serve`).
See docs/architecture.md.
"""
