"""Deprecated: meetcore-webrtc was split into meetcore-server (the server, `meetcore
serve`), meetcore-media (the SFU) and meetcore-client (the Python client SDK). This
distribution installs all three, and keeps the old names that users imported as
aliases that warn: `meetcore_webrtc.client` (now `meetcore_client`),
`meetcore_webrtc.app` (now `meetcore_server`) and `meetcore_webrtc.testing` (now
`meetcore_server.testing`). See docs/architecture.md.
"""
