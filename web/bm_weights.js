// ComfyUI frontend extension of comfyui-beyond-monologue: a download link on loader nodes whose
// model file is missing.
//
// GET /beyond_monologue/weights (beyond_monologue/weights/route.py) says which node inputs name a
// model file (this pack's loaders and the native loaders of our workflows), which ComfyUI folders
// they read and which manifest files (URL, size, licence) each can load. Every node of those types
// gets a DOM widget, hidden while its selected file is in the input's option list. When the file is
// not there (or the list is empty, or a run failed because the file was not found) the widget shows
// the file, its download link (the manifest's URL, new tab) and the folder to put it in. It is
// re-checked when the value changes, when a workflow is loaded and after "Refresh" (R) re-reads the
// model lists. Plain ES module, no build step.

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { noticeFor, optionValues, renderNotices } from "./lib/weights_notice.js";

export const EXTENSION_NAME = "BeyondMonologue.Weights";
export const ROUTE = "/beyond_monologue/weights";
export const WIDGET_NAME = "bm_weights";
const WIDGET_MARGIN = 4;
// Errors of a run whose model file was not found: this pack's loaders ("... is not in models/<folder>",
// "... is not in ComfyUI's models/<folder> folder") and folder_paths.get_full_path_or_raise.
export const MISSING_FILE_ERROR = /is not in (?:ComfyUI's )?models\/|Model in folder '[^']*' with filename '[^']*' not found/;

let status = null; // the route's last answer; null until loaded or when it failed

/** Read the route again (after start-up and after the model lists were refreshed). */
export async function loadStatus() {
  try {
    const response = await api.fetchApi(ROUTE, { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    status = await response.json();
  } catch (error) {
    console.warn(`[${EXTENSION_NAME}] ${ROUTE} failed, no missing-weights notices:`, error);
    status = null;
  }
  return status;
}

/** The payload's loader inputs of a node ({inputName: {folders, files}}), or null for other nodes. */
function loaderInputs(node) {
  return status?.inputs?.[node.comfyClass ?? node.type] ?? null;
}

/** Add the (hidden) notice widget to a node once and return its state. */
function addNoticeWidget(node) {
  if (node.bmWeights) return node.bmWeights;
  const element = document.createElement("div");
  element.className = "bm-weights-notice";
  const state = { element, height: 0, failed: new Set(), grown: false };
  const widget = node.addDOMWidget(WIDGET_NAME, "bm_weights", element, {
    serialize: false,
    hideOnZoom: false,
    margin: WIDGET_MARGIN,
    getMinHeight: () => state.height + 2 * WIDGET_MARGIN,
    getMaxHeight: () => state.height + 2 * WIDGET_MARGIN,
  });
  widget.serialize = false; // never in the prompt or the workflow's widgets_values
  widget.hidden = true;
  state.widget = widget;
  node.bmWeights = state;
  return state;
}

/** Show, update or hide a node's notice from its loader inputs' current values and option lists. */
export function updateNotice(node) {
  const state = node.bmWeights;
  const inputs = loaderInputs(node);
  if (!state || !inputs) return;
  const notices = [];
  for (const [name, row] of Object.entries(inputs)) {
    const widget = node.widgets?.find((w) => w.name === name);
    const linked = node.inputs?.some((slot) => slot.widget?.name === name && slot.link != null);
    if (!widget || linked) continue; // a value from another node is judged when it runs
    const notice = noticeFor(row, widget.value, optionValues(widget), status.files, state.failed.has(name));
    if (notice) notices.push(notice);
  }
  const show = notices.length > 0;
  if (show) state.height = renderNotices(state.element, notices);
  if (!show && state.widget.hidden) return;
  state.widget.hidden = !show;
  const [width, height] = node.computeSize();
  if (show && node.size[1] < height) {
    node.setSize([Math.max(node.size[0], width), height]);
    state.grown = true;
  } else if (!show && state.grown) {
    node.setSize([node.size[0], height]);
    state.grown = false;
  }
  node.setDirtyCanvas?.(true, true);
}

function graphNodes() {
  const graphs = [app.graph, ...(app.graph?.subgraphs?.values?.() ?? [])];
  return graphs.flatMap((graph) => graph?.nodes ?? []);
}

/** A run failed: if a loader of ours could not find its file, show that node's notice. */
function onExecutionError({ detail }) {
  const id = String(detail?.node_id ?? "");
  // "a:b" ids are nodes inside subgraphs: left alone rather than guessed
  if (!MISSING_FILE_ERROR.test(detail?.exception_message ?? "") || !id || id.includes(":")) return;
  const node = app.graph?.getNodeById(Number(id)) ?? app.graph?.getNodeById(id);
  const inputs = node && loaderInputs(node);
  if (!inputs || !node.bmWeights) return;
  // the input whose value the message names, else every loader input of the node
  const named = Object.keys(inputs).filter((name) => {
    const value = node.widgets?.find((w) => w.name === name)?.value;
    return value && detail.exception_message.includes(value);
  });
  for (const name of named.length ? named : Object.keys(inputs)) node.bmWeights.failed.add(name);
  updateNotice(node);
}

app.registerExtension({
  name: EXTENSION_NAME,

  async init() {
    await loadStatus(); // before registerNodes, so beforeRegisterNodeDef knows the loader table
  },

  async setup() {
    api.addEventListener("execution_error", onExecutionError);
  },

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!status?.inputs?.[nodeData.name]) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      addNoticeWidget(this);
      updateNotice(this);
      return result;
    };
    const onWidgetChanged = nodeType.prototype.onWidgetChanged;
    nodeType.prototype.onWidgetChanged = function (name) {
      const result = onWidgetChanged?.apply(this, arguments);
      this.bmWeights?.failed.delete(name);
      updateNotice(this);
      return result;
    };
    const onConfigure = nodeType.prototype.onConfigure;
    nodeType.prototype.onConfigure = function () {
      const result = onConfigure?.apply(this, arguments);
      updateNotice(this); // a loaded workflow set the widget values
      return result;
    };
  },

  // "Refresh" (R) re-read the node definitions and set the combos' new option lists.
  async refreshComboInNodes() {
    await loadStatus();
    for (const node of graphNodes()) {
      if (!node.bmWeights) continue;
      node.bmWeights.failed.clear();
      updateNotice(node);
    }
  },
});
