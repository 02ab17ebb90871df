// Missing-weights notice: which file a loader node lacks and where to get it. Plain DOM, no ComfyUI
// imports, only exports (the frontend imports every .js under web/). bm_weights.js puts the element
// in a node's DOM widget.
//
// The data comes from GET /beyond_monologue/weights (beyond_monologue/weights/presence.py, version 1):
//   { files: { id: { folder, filename, alt_filenames, url, size, licence, sets, present, ... } },
//     inputs: { nodeType: { inputName: { folders: [...], files: [ids] } } } }
// Download links are only ever the manifest's URLs from that payload.

export const LINE_HEIGHT = 17;
export const PADDING = 5;
export const NOTICE_COLOURS = { background: "#3d2a0c", border: "#e0a030", text: "#ffd9a0", link: "#ffc266" };
const SAFE_URL = /^https?:\/\//;

/** The file name of a combo value (which may carry sub-folders, with / or \). */
export function basename(name) {
  return String(name ?? "").split(/[\\/]/).pop();
}

/** A combo widget's current option list (an array, or a function returning one). */
export function optionValues(widget) {
  const values = widget?.options?.values;
  const list = typeof values === "function" ? values(widget) : values;
  return Array.isArray(list) ? list : [];
}

/** The manifest entry among fileIds whose name or alternative name is the combo value's file name, case-insensitive. */
export function manifestEntryFor(value, fileIds, files) {
  const wanted = basename(value).toLowerCase();
  if (!wanted) return null;
  for (const id of fileIds) {
    const entry = files?.[id];
    if (!entry) continue;
    const names = [entry.filename, ...(entry.alt_filenames ?? [])].map((n) => n.toLowerCase());
    if (names.includes(wanted)) return entry;
  }
  return null;
}

/**
 * What to tell the user about one loader input, or null when its file is there.
 *
 * @param row      {folders, files} of the payload's `inputs` for this node input
 * @param value    the widget's value (a file name from the folders, or "" / undefined)
 * @param options  the widget's current options (ComfyUI's listing of the folders)
 * @param files    the payload's `files`
 * @param failed   a run failed because the file was not found (trust that over a stale list)
 * @returns null, or {kind: "missing", value, file} (a manifest file), {kind: "unknown", value, folders}
 *          (a file the manifest does not know), or {kind: "empty", folders, files} (nothing selected;
 *          files = the manifest files this input can load that are not present)
 */
export function noticeFor(row, value, options, files, failed = false) {
  const name = typeof value === "string" ? value : "";
  if (name && options.includes(name) && !failed) return null;
  if (!name) {
    if (options.length && !failed) return null;
    const candidates = row.files.map((id) => files?.[id]).filter((entry) => entry && !entry.present);
    return { kind: "empty", folders: row.folders, files: candidates };
  }
  const file = manifestEntryFor(name, row.files, files);
  return file ? { kind: "missing", value: name, file } : { kind: "unknown", value: name, folders: row.folders };
}

function folderText(folders) {
  return folders.map((folder) => `models/${folder}/`).join(" or ");
}

/** A short size for the notice: GiB from the exact size, else the first clause of the manifest's size note. */
export function shortSize(file) {
  if (file.size_bytes != null) return `${(file.size_bytes / 2 ** 30).toFixed(2)} GiB`;
  return String(file.size ?? "").split(/[,;(]/)[0].trim();
}

function line(text, title = text) {
  const div = document.createElement("div");
  div.className = "bm-weights-line";
  div.textContent = text;
  div.title = title;
  Object.assign(div.style, { whiteSpace: "nowrap", overflow: "hidden", textOverflow: "ellipsis", lineHeight: `${LINE_HEIGHT}px` });
  return div;
}

function stem(filename) {
  return filename.replace(/\.safetensors$/i, "");
}

function fileTitle(file) {
  return [`${file.filename} (${file.size})`, file.url ?? "not published yet", `into ComfyUI/models/${file.folder}/`,
          `licence: ${file.licence}`, `model set: ${file.sets.join(", ")}`, file.purpose ?? ""].join("\n").trim();
}

/** "⇩ <label> (size)" with label linking to the manifest URL in a new tab; unpublished files get no link. */
function downloadLine(file, label) {
  if (!file.url || !SAFE_URL.test(file.url)) {
    return line(`\u2013 ${stem(file.filename)}: not published yet`, fileTitle(file));
  }
  const div = line("", fileTitle(file));
  const link = document.createElement("a");
  link.className = "bm-weights-link";
  link.href = file.url;
  link.target = "_blank";
  link.rel = "noopener noreferrer";
  link.textContent = label;
  Object.assign(link.style, { color: NOTICE_COLOURS.link, textDecoration: "underline" });
  div.append("\u21e9 ", link, ` (${shortSize(file)})`);
  return div;
}

/** The notice's lines as DOM elements (one notice per loader input that lacks its file). */
export function noticeLines(notice) {
  if (notice.kind === "missing") {
    const { file } = notice;
    return [line(`\u26a0 Missing: ${notice.value}`), downloadLine(file, "Download it"),
            line(`into ${folderText([file.folder])}, then press R`, fileTitle(file))];
  }
  if (notice.kind === "unknown") {
    return [line(`\u26a0 Not found: ${notice.value}`),
            line(`Put it in ${folderText(notice.folders)} and press R,`), line("or pick another file.")];
  }
  const files = [...notice.files].sort((a, b) => Boolean(b.url) - Boolean(a.url)); // downloadable first
  const lines = [line(files.length ? "\u26a0 No model file yet. Get one:" : `\u26a0 No file in ${folderText(notice.folders)}`)];
  lines.push(...files.map((file) => downloadLine(file, stem(file.filename))));
  if (files.length) {
    const targets = [...new Set(files.map((file) => file.folder))];
    lines.push(line(`into ${folderText(targets)}, then press R`));
  }
  return lines;
}

/** Fill element with the notices (a list from noticeFor) and style it; returns the CSS height it needs (px). */
export function renderNotices(element, notices) {
  const lines = notices.flatMap(noticeLines);
  element.replaceChildren(...lines);
  element.dataset.kinds = notices.map((notice) => notice.kind).join(" ");
  Object.assign(element.style, {
    boxSizing: "border-box", padding: `${PADDING}px ${PADDING + 2}px`, borderRadius: "4px",
    background: NOTICE_COLOURS.background, border: `1px solid ${NOTICE_COLOURS.border}`,
    color: NOTICE_COLOURS.text, font: "12px sans-serif", overflow: "hidden",
  });
  return lines.length * LINE_HEIGHT + 2 * PADDING + 2;
}
