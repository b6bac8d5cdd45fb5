// WebRTC with the server's media plane (docs/MEDIA.md, "Signalling"): POST an SDP offer, get the answer as JSON.
// aiortc does not trickle ICE, so the offer is sent once the browser has gathered its candidates.
import { api } from "./api.js";

export function mediaInfo(streamId) {
  return api("GET", `/api/streams/${streamId}/media`);
}

function gathered(pc, timeoutMs = 3000) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

function iceServers(info) {
  return Array.isArray(info?.ice_servers) ? info.ice_servers : [];
}

// While no media flows (the host has not started the camera yet), the server closes a silent session
// unless it hears a heartbeat; a 404 means the session is gone and `lost` is called.
function heartbeat(streamId, sessionId, info, lost) {
  if (!info?.heartbeat_s || !sessionId) return null;
  return setInterval(() => {
    api("POST", `/api/streams/${streamId}/media/${sessionId}/heartbeat`).catch((err) => {
      if (err.status === 404) lost?.();
    });
  }, info.heartbeat_s * 1000);
}

async function negotiate(pc, path) {
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const answer = await api("POST", path, { sdp: pc.localDescription.sdp, type: pc.localDescription.type });
  await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
  return answer;
}

// Play a stream in `video`. Returns {pc, close()}; onState(connectionState) follows the connection.
export async function watch(streamId, video, info, onState) {
  const pc = new RTCPeerConnection({ iceServers: iceServers(info) });
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  const media = new MediaStream();
  pc.addEventListener("track", (e) => {
    media.addTrack(e.track);
    video.srcObject = media;
    video.play().catch(() => null);
  });
  pc.addEventListener("connectionstatechange", () => onState?.(pc.connectionState));
  let sessionId = null;
  try {
    sessionId = (await negotiate(pc, `/api/streams/${streamId}/watch`)).session_id;
  } catch (err) {
    pc.close();
    throw err;
  }
  const beat = heartbeat(streamId, sessionId, info, () => onState?.("failed"));
  return {
    pc,
    close() {
      clearInterval(beat);
      pc.close();
      if (sessionId) {
        // keepalive: the request still goes out when the page is being closed.
        fetch(`/api/streams/${streamId}/watch/${sessionId}`, { method: "DELETE", credentials: "same-origin", keepalive: true }).catch(() => null);
        sessionId = null;
      }
    },
  };
}

// Send the camera's tracks to the server as the stream's video. Returns {pc, close()}.
export async function publish(streamId, stream, info, onState) {
  const pc = new RTCPeerConnection({ iceServers: iceServers(info) });
  for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
  pc.addEventListener("connectionstatechange", () => onState?.(pc.connectionState));
  let answer;
  try {
    answer = await negotiate(pc, `/api/streams/${streamId}/publish`);
  } catch (err) {
    pc.close();
    throw err;
  }
  const beat = heartbeat(streamId, answer.session_id, info, () => onState?.("failed"));
  return {
    pc,
    async close() {
      clearInterval(beat);
      pc.close();
      await api("DELETE", `/api/streams/${streamId}/publish`).catch(() => null);
    },
  };
}
