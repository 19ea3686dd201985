// accelbench report: sortable tables (click or Enter on a header) and an image check.
(function () {
  "use strict";
  function cellValue(row, col) {
    var cell = row.cells[col];
    if (!cell) return null;
    if (cell.hasAttribute("data-v")) {
      var n = parseFloat(cell.getAttribute("data-v"));
      return isNaN(n) ? cell.getAttribute("data-v") : n;
    }
    var text = cell.textContent.trim();
    return text === "" || text === "-" ? null : text;
  }
  function sortTable(table, col, th) {
    var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, col), y = cellValue(b, col);
      if (x === null && y === null) return 0;
      if (x === null) return 1;  // missing values last, whichever the direction
      if (y === null) return -1;
      if (typeof x === "number" && typeof y === "number") return (x - y) * dir;
      return String(x).localeCompare(String(y), undefined, { numeric: true }) * dir;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    if (!table.tHead) return;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.tabIndex = 0;
      th.addEventListener("click", function () { sortTable(table, col, th); });
      th.addEventListener("keydown", function (ev) {
        if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); sortTable(table, col, th); }
      });
    });
  });
  // Records how many embedded images decoded (read back by the report's browser test).
  function checkImages() {
    var imgs = Array.prototype.slice.call(document.images);
    var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
    document.documentElement.setAttribute("data-images", ok + "/" + imgs.length);
    // Page width against the viewport: equal when nothing overflows sideways (phones).
    document.documentElement.setAttribute("data-layout",
      document.documentElement.scrollWidth + "/" + window.innerWidth);
  }
  if (document.readyState === "complete") checkImages();
  else window.addEventListener("load", checkImages);
})();
