// Charts as plain SVG, built with DOM calls (no library, no markup from data).
"use strict";
const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  function el(tag, attrs = {}, text) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Horizontal bars: rows [{label, value, note, cls, data}], the longest bar spans the width.
  function bars(rows, { width = 640, barHeight = 26, gap = 18, labelWidth = 90, className = "" } = {}) {
    const max = Math.max(1, ...rows.map(r => r.value));
    const height = rows.length * (barHeight + gap);
    const svg = el("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: className, role: "img" });
    const room = width - labelWidth - 70;
    rows.forEach((r, i) => {
      const y = i * (barHeight + gap);
      const g = el("g", { class: "bar-row", ...Object.fromEntries(Object.entries(r.data || {}).map(([k, v]) => [`data-${k}`, v])) });
      g.append(el("text", { x: 0, y: y + barHeight * .68 }, r.label));
      g.append(el("rect", { class: `bar ${r.cls || ""}`, x: labelWidth, y, height: barHeight, rx: 3,
                            width: Math.max(2, room * r.value / max) }));
      g.append(el("text", { class: "count", x: labelWidth + Math.max(2, room * r.value / max) + 6, y: y + barHeight * .68 },
                  r.value.toLocaleString()));
      if (r.note) g.append(el("text", { class: "rate", x: labelWidth, y: y + barHeight + 13 }, r.note));
      svg.append(g);
    });
    return svg;
  }

  // A step line of {date, size} points (sizes at the end of each day with a change).
  function sizes(points, { width = 640, height = 200, pad = 36 } = {}) {
    const svg = el("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", class: "size-chart" });
    if (!points.length) {
      svg.append(el("text", { x: pad, y: height / 2 }, "no members yet"));
      return svg;
    }
    const times = points.map(p => Date.parse(p.date));
    const t0 = Math.min(...times), t1 = Math.max(...times, t0 + 86400000);
    const max = Math.max(1, ...points.map(p => p.size));
    const x = t => pad + (width - 2 * pad) * (t - t0) / (t1 - t0);
    const y = v => height - pad - (height - 2 * pad) * v / max;
    let d = "";
    points.forEach((p, i) => {
      const px = x(times[i]), py = y(p.size);
      d += i === 0 ? `M${px},${py}` : `H${px}V${py}`;
    });
    d += `H${width - pad}`;
    svg.append(el("line", { class: "axis", x1: pad, x2: width - pad, y1: height - pad, y2: height - pad }));
    svg.append(el("path", { class: "area", d: `${d}V${height - pad}H${x(times[0])}Z` }));
    svg.append(el("path", { class: "line", d }));
    svg.append(el("text", { x: 0, y: y(max) + 4 }, max.toLocaleString()));
    svg.append(el("text", { x: 0, y: height - pad + 4 }, "0"));
    svg.append(el("text", { x: pad, y: height - 8 }, points[0].date));
    svg.append(el("text", { x: width - pad, y: height - 8, "text-anchor": "end" }, points[points.length - 1].date));
    points.forEach((p, i) => svg.append(el("circle", { cx: x(times[i]), cy: y(p.size), r: 2.5, fill: "#3559e0",
                                                       "data-date": p.date, "data-size": p.size })));
    return svg;
  }
  return { bars, sizes };
})();
