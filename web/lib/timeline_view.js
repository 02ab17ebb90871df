// Talk/listen activity timeline with a playback cursor: plain DOM + canvas, no ComfyUI imports,
// so it can be tested on its own. bm_timeline.js puts one TimelineView in a node's DOM widget.
//
// Lanes are drawn top to bottom in payload order; the legend above the canvas names them.
// The payload it draws is documented in beyond_monologue/audio/activity_timeline.py (version 1):
//   { version, duration_s, lanes: [{ id, label, turns: [[start_s, end_s], ...] }], audio }
// Lanes with id "talk" and "listen" get LANE_COLOURS.talk / .listen; other ids get OTHER_LANE_COLOUR.

export const LANE_COLOURS = { talk: "#ff8c1a", listen: "#1ab2ff" };
export const OTHER_LANE_COLOUR = "#b48cff";
export const CURSOR_COLOUR = "#ffffff";
const BACKGROUND = "#1b1b1f";
const LANE_BACKGROUND = "#2b2b33";
const TEXT_COLOUR = "#9a9aa8";
const PAD_X = 8;
const AXIS_HEIGHT = 16;
const LANE_GAP = 6;
const TICK_STEPS_S = [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600];

/** x (CSS px) of time t (s) on a track from x0 to x1 showing 0..duration seconds. */
export function timeToX(t, duration, x0, x1) {
  const clamped = Math.min(Math.max(t, 0), duration);
  return x0 + (duration > 0 ? (clamped / duration) * (x1 - x0) : 0);
}

/** Time (s) at x (CSS px) on a track from x0 to x1; clamped to 0..duration. */
export function xToTime(x, duration, x0, x1) {
  if (x1 <= x0) return 0;
  return Math.min(Math.max(((x - x0) / (x1 - x0)) * duration, 0), duration);
}

/** Lane rectangles {x, y, w, h} (CSS px) for laneCount lanes in a width x height canvas, plus the track. */
export function laneLayout(width, height, laneCount) {
  const x0 = PAD_X;
  const x1 = Math.max(PAD_X + 1, width - PAD_X);
  const top = 4;
  const usable = Math.max(0, height - AXIS_HEIGHT - top - LANE_GAP * Math.max(0, laneCount - 1));
  const laneHeight = laneCount > 0 ? usable / laneCount : 0;
  const lanes = [];
  for (let i = 0; i < laneCount; i++) {
    lanes.push({ x: x0, y: top + i * (laneHeight + LANE_GAP), w: x1 - x0, h: laneHeight });
  }
  return { x0, x1, lanes, axisY: height - AXIS_HEIGHT };
}

/** Seconds between axis ticks so that ticks are at least minPx apart. */
export function tickStep(duration, trackWidth, minPx = 60) {
  for (const step of TICK_STEPS_S) {
    if ((step / Math.max(duration, 1e-6)) * trackWidth >= minPx) return step;
  }
  return TICK_STEPS_S[TICK_STEPS_S.length - 1];
}

/** "m:ss.s" for a time in seconds. */
export function formatTime(t) {
  const m = Math.floor(t / 60);
  const s = t - m * 60;
  return `${m}:${s < 10 ? "0" : ""}${s.toFixed(1)}`;
}

/** Colour of a lane by its id. */
export function laneColour(id) {
  return LANE_COLOURS[id] ?? OTHER_LANE_COLOUR;
}

/**
 * The widget's contents: a control row (play/pause, time) above a canvas with one lane per stream
 * and a cursor. Click or drag on the canvas to seek.
 *
 * @param {(audioRef: {filename, subfolder, type}) => string} audioUrl maps the payload's audio file to a URL.
 */
export class TimelineView {
  constructor(audioUrl) {
    this.audioUrl = audioUrl;
    this.payload = null;
    this.time = 0;
    this._raf = 0;

    this.element = document.createElement("div");
    this.element.className = "bm-timeline";
    Object.assign(this.element.style, {
      display: "flex", flexDirection: "column", gap: "4px", width: "100%", height: "100%",
      boxSizing: "border-box", padding: "2px 0", font: "12px sans-serif", color: TEXT_COLOUR,
    });

    const controls = document.createElement("div");
    Object.assign(controls.style, { display: "flex", alignItems: "center", gap: "8px", flex: "0 0 auto" });
    this.playButton = document.createElement("button");
    this.playButton.type = "button";
    this.playButton.className = "bm-timeline-play";
    this.playButton.textContent = "\u25B6";
    this.playButton.title = "Play / pause the conversation";
    this.playButton.disabled = true;
    Object.assign(this.playButton.style, { minWidth: "28px", cursor: "pointer" });
    this.playButton.addEventListener("click", () => this.togglePlay());
    this.timeLabel = document.createElement("span");
    this.timeLabel.className = "bm-timeline-time";
    this.legend = document.createElement("span");
    this.legend.className = "bm-timeline-legend";
    Object.assign(this.legend.style, { marginLeft: "auto", display: "flex", gap: "10px" });
    controls.append(this.playButton, this.timeLabel, this.legend);

    this.canvas = document.createElement("canvas");
    this.canvas.className = "bm-timeline-canvas";
    Object.assign(this.canvas.style, { flex: "1 1 auto", width: "100%", minHeight: "60px", cursor: "pointer" });
    this.canvas.addEventListener("pointerdown", (e) => this._seekFromEvent(e));
    this.canvas.addEventListener("pointermove", (e) => { if (e.buttons & 1) this._seekFromEvent(e); });

    this.audio = document.createElement("audio");
    this.audio.preload = "metadata";
    for (const event of ["timeupdate", "seeked", "pause", "ended", "loadedmetadata"]) {
      this.audio.addEventListener(event, () => this._onAudioEvent(event));
    }
    this.audio.addEventListener("play", () => this._animate());

    this.element.append(controls, this.canvas, this.audio);
    this._resizeObserver = new ResizeObserver(() => this.draw());
    this._resizeObserver.observe(this.canvas);
    this._updateLabel();
  }

  /** Show a new payload (an executed node's output); resets the cursor and loads its audio. */
  setPayload(payload) {
    this.pause();
    this.payload = payload && Array.isArray(payload.lanes) && payload.duration_s > 0 ? payload : null;
    this.time = 0;
    const src = this.payload?.audio ? this.audioUrl(this.payload.audio) : "";
    if (src) {
      this.audio.src = src;
    } else {
      this.audio.removeAttribute("src");
    }
    this.playButton.disabled = !src;
    this._updateLegend();
    this._updateLabel();
    this.draw();
  }

  _updateLegend() {
    this.legend.replaceChildren(...(this.payload?.lanes ?? []).map((lane) => {
      const item = document.createElement("span");
      const swatch = document.createElement("span");
      Object.assign(swatch.style, {
        display: "inline-block", width: "10px", height: "10px", marginRight: "4px", background: laneColour(lane.id),
      });
      item.append(swatch, document.createTextNode(lane.label));
      return item;
    }));
  }

  /** Move the cursor (and the audio) to t seconds. */
  seek(t) {
    if (!this.payload) return;
    this.time = Math.min(Math.max(t, 0), this.payload.duration_s);
    if (this.audio.getAttribute("src")) {
      try { this.audio.currentTime = this.time; } catch { /* metadata not loaded yet: set again on load */ }
    }
    this._updateLabel();
    this.draw();
  }

  togglePlay() {
    if (!this.audio.getAttribute("src")) return;
    if (this.audio.paused) {
      this.audio.play().catch((error) => console.warn("[BeyondMonologue] audio playback refused:", error.message));
    } else {
      this.pause();
    }
  }

  pause() {
    if (!this.audio.paused) this.audio.pause();
  }

  /** Stop playback and observers (node removed). */
  destroy() {
    this.pause();
    cancelAnimationFrame(this._raf);
    this._resizeObserver.disconnect();
    this.audio.removeAttribute("src");
  }

  _onAudioEvent(event) {
    if (event === "loadedmetadata" && this.time > 0) {
      this.audio.currentTime = this.time;
    } else if (event !== "loadedmetadata") {
      this.time = this.audio.currentTime;
    }
    this.playButton.textContent = this.audio.paused ? "\u25B6" : "\u275A\u275A";
    this._updateLabel();
    this.draw();
  }

  _animate() {
    cancelAnimationFrame(this._raf);
    const step = () => {
      this.time = this.audio.currentTime;
      this._updateLabel();
      this.draw();
      if (!this.audio.paused && !this.audio.ended) this._raf = requestAnimationFrame(step);
    };
    this._raf = requestAnimationFrame(step);
  }

  _seekFromEvent(event) {
    if (!this.payload) return;
    const rect = this.canvas.getBoundingClientRect();
    const { x0, x1 } = laneLayout(rect.width, rect.height, this.payload.lanes.length);
    this.seek(xToTime(event.clientX - rect.left, this.payload.duration_s, x0, x1));
    event.preventDefault();
    event.stopPropagation();
  }

  _updateLabel() {
    this.timeLabel.textContent = this.payload
      ? `${formatTime(this.time)} / ${formatTime(this.payload.duration_s)}`
      : "talk / listen timeline: run the workflow";
  }

  /** Redraw the canvas at its current CSS size (device-pixel sharp). */
  draw() {
    const width = this.canvas.clientWidth;
    const height = this.canvas.clientHeight;
    if (width <= 0 || height <= 0) return;
    const dpr = window.devicePixelRatio || 1;
    if (this.canvas.width !== Math.round(width * dpr) || this.canvas.height !== Math.round(height * dpr)) {
      this.canvas.width = Math.round(width * dpr);
      this.canvas.height = Math.round(height * dpr);
    }
    const ctx = this.canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = BACKGROUND;
    ctx.fillRect(0, 0, width, height);
    if (!this.payload) {
      ctx.fillStyle = TEXT_COLOUR;
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText("talk / listen activity appears here after a run", width / 2, height / 2);
      return;
    }
    const { duration_s: duration, lanes } = this.payload;
    const layout = laneLayout(width, height, lanes.length);
    lanes.forEach((lane, i) => {
      const box = layout.lanes[i];
      ctx.fillStyle = LANE_BACKGROUND;
      ctx.fillRect(box.x, box.y, box.w, box.h);
      ctx.fillStyle = laneColour(lane.id);
      for (const [start, end] of lane.turns) {
        const xa = timeToX(start, duration, layout.x0, layout.x1);
        const xb = timeToX(end, duration, layout.x0, layout.x1);
        ctx.fillRect(xa, box.y, Math.max(1, xb - xa), box.h);
      }
    });
    const step = tickStep(duration, layout.x1 - layout.x0);
    ctx.fillStyle = TEXT_COLOUR;
    ctx.font = "10px sans-serif";
    ctx.textBaseline = "top";
    for (let t = 0; t <= duration + 1e-6; t += step) {
      const x = timeToX(t, duration, layout.x0, layout.x1);
      ctx.fillRect(x, layout.axisY, 1, 4);
      ctx.textAlign = t === 0 ? "left" : x > layout.x1 - 20 ? "right" : "center";
      ctx.fillText(`${Math.round(t * 10) / 10}s`, x, layout.axisY + 5);
    }
    const cx = timeToX(this.time, duration, layout.x0, layout.x1);
    ctx.fillStyle = CURSOR_COLOUR;
    ctx.fillRect(Math.round(cx) - 1, 0, 2, layout.axisY);
  }
}
