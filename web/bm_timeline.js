// ComfyUI frontend extension of comfyui-beyond-monologue: a talk/listen timeline widget.
//
// Nodes listed in TIMELINE_NODES get a DOM widget that draws the node's last output as one lane
// per audio stream (talk, listen) under a playback cursor, plays the conversation and seeks on
// click. A node feeds it by returning ui={"bm_timeline": [payload]} from execute (payload:
// beyond_monologue/audio/activity_timeline.py, docs/DEVELOPING.md). Plain ES module, no build step.

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { TimelineView } from "./lib/timeline_view.js";

export const EXTENSION_NAME = "BeyondMonologue.Timeline";
export const PAYLOAD_KEY = "bm_timeline";
export const WIDGET_NAME = "bm_timeline";
// Node types that send a timeline payload. BMDualStreamEncode sends the same payload once it exists.
export const TIMELINE_NODES = new Set(["BMSplitConversation", "BMDualStreamEncode"]);
const MIN_HEIGHT = 120;
const MIN_WIDTH = 420;

/** URL of a file ComfyUI serves through /view ({filename, subfolder, type} as in a node's output). */
export function viewUrl({ filename, subfolder = "", type = "temp" }) {
  return api.apiURL(`/view?${new URLSearchParams({ filename, subfolder, type })}`);
}

/** Add the timeline widget to a node (once) and return its TimelineView. */
export function addTimelineWidget(node) {
  if (node.bmTimeline) return node.bmTimeline;
  const view = new TimelineView(viewUrl);
  const widget = node.addDOMWidget(WIDGET_NAME, "bm_timeline", view.element, {
    serialize: false,
    hideOnZoom: false,
    getMinHeight: () => MIN_HEIGHT,
  });
  widget.serialize = false; // not part of the workflow's widgets_values
  const onRemove = widget.onRemove;
  widget.onRemove = function () {
    view.destroy();
    return onRemove?.apply(this, arguments);
  };
  node.bmTimeline = view;
  const [width, height] = node.computeSize();
  node.setSize([Math.max(node.size[0], width, MIN_WIDTH), Math.max(node.size[1], height)]);
  return view;
}

/** Show the payload of an executed/restored node output, if it carries one. */
function showOutput(node, output) {
  const payload = output?.[PAYLOAD_KEY]?.[0];
  if (payload && node.bmTimeline) {
    node.bmTimeline.setPayload(payload);
    node.setDirtyCanvas?.(true, true);
  }
}

app.registerExtension({
  name: EXTENSION_NAME,

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!TIMELINE_NODES.has(nodeData.name)) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      addTimelineWidget(this);
      return result;
    };
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (output) {
      onExecuted?.apply(this, arguments);
      showOutput(this, output);
    };
  },

  // Outputs restored by the frontend (e.g. switching back to a workflow tab) arrive here, keyed by node id.
  onNodeOutputsUpdated(nodeOutputs) {
    for (const [id, output] of Object.entries(nodeOutputs ?? {})) {
      if (!output?.[PAYLOAD_KEY]) continue;
      const node = app.graph?.getNodeById(Number(id)) ?? app.graph?.getNodeById(id);
      if (node) showOutput(node, output);
    }
  },
});
