"""Live rooms: websocket transport, the per-node hub, rooms, in-stream checkout and moderation."""
