"""The media plane: WebRTC signalling sessions, relays and backends (aiortc | livekit); see docs/MEDIA.md."""
