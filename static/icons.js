// Inline SVG icons: they render the same on every system (an emoji needs a
// font that has it). Built with createElementNS, never from markup strings.

const NS = "http://www.w3.org/2000/svg";

// 24×24 outline paths (stroke, no fill).
const PATHS = {
  clip: ["M21 11.5l-8.6 8.6a5 5 0 0 1-7.1-7.1l8.6-8.6a3.3 3.3 0 0 1 4.7 4.7l-8.6 8.6a1.7 1.7 0 0 1-2.4-2.4l7.9-7.9"],
  archive: ["M3 4h18v4H3z", "M5 8v12h14V8", "M10 12h4"],
  trash: ["M3 6h18", "M8 6V4h8v2", "M6 6l1 14h10l1-14", "M10 10v7", "M14 10v7"],
  inbox: ["M3 13l3-8h12l3 8v6H3z", "M3 13h5l1 3h6l1-3h5"],
  reply: ["M9 7L4 12l5 5", "M4 12h10a6 6 0 0 1 6 6v1"],
  replyAll: ["M11 7l-5 5 5 5", "M7 7l-5 5 5 5", "M6 12h8a6 6 0 0 1 6 6v1"],
  forward: ["M15 7l5 5-5 5", "M20 12H10a6 6 0 0 0-6 6v1"],
  unread: ["M3 6h18v12H3z", "M3 7l9 6 9-6"],
  read: ["M3 10l9-6 9 6v10H3z", "M3 10l9 6 9-6"],
  back: ["M15 5l-7 7 7 7"],
  close: ["M6 6l12 12", "M18 6L6 18"],
  plus: ["M12 5v14", "M5 12h14"],
  minimise: ["M6 17h12"],
  restore: ["M6 15l6-6 6 6"],
  gear: ["M12 9a3 3 0 1 0 0 6 3 3 0 0 0 0-6z",
    "M19 12l2-1-1-3-2 .2-1.3-1.3L17 5l-3-1-1 2h-2L10 4 7 5l.3 2L5.9 8.2 4 8 3 11l2 1v0l-2 1 1 3 2-.2 1.3 1.3L7 19l3 1 1-2h2l1 2 3-1-.3-2 1.4-1.3L20 16l1-3z"],
};

/** An icon as an <svg> element, hidden from screen readers (the button says it in words). */
export function icon(name, { size = 18 } = {}) {
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", String(size));
  svg.setAttribute("height", String(size));
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.setAttribute("class", `icon-svg icon-${name}`);
  for (const d of PATHS[name] || []) {
    const path = document.createElementNS(NS, "path");
    path.setAttribute("d", d);
    svg.append(path);
  }
  return svg;
}
