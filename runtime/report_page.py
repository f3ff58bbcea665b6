"""The fixed parts of the `--report` page: its style and its script (plain JavaScript, nothing fetched).

The script sorts the table on a header click (numbers by value, text alphabetically; again to reverse),
filters rows by status, answer and a text search, and shows a row's heatmap (or its scan) in a dialog.
"""

from __future__ import annotations

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; margin: 0 0 .3em; }
.model { color: #555; font-size: .9em; word-break: break-all; }
.summary { display: flex; flex-wrap: wrap; gap: .6em; margin: 1em 0; padding: 0; list-style: none; }
.summary li { background: #f2f4f7; border-radius: 6px; padding: .4em .8em; }
.summary b { font-size: 1.2em; }
.controls { display: flex; gap: 1em; align-items: center; margin: .8em 0; flex-wrap: wrap; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: .3em .5em; text-align: left; vertical-align: middle; }
th[data-type] { cursor: pointer; user-select: none; white-space: nowrap; }
th[aria-sort=ascending]::after { content: " \\25B2"; }
th[aria-sort=descending]::after { content: " \\25BC"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.file { word-break: break-all; max-width: 28em; }
img.thumb { width: 64px; height: 64px; object-fit: contain; background: #000; cursor: zoom-in; }
tr.abstained { background: #fff6e0; }
tr.error { background: #fde8e8; }
.tag { border-radius: 4px; padding: 0 .4em; font-size: .85em; }
.tag.abstained { background: #f5c26b; }
.tag.error { background: #e88; }
dialog { max-width: 95vw; padding: 1em; }
dialog img { width: min(90vw, 160vh); image-rendering: pixelated; display: block; }
"""

SCRIPT = """
(() => {
  const table = document.getElementById("results");
  const body = table.tBodies[0];
  const status = document.getElementById("status");
  const answer = document.getElementById("answer");
  const search = document.getElementById("search");
  const shown = document.getElementById("shown");
  const dialog = document.getElementById("viewer");
  const collator = new Intl.Collator(undefined, {numeric: true});

  function key(row, column, numeric) {
    const value = row.cells[column].dataset.value ?? row.cells[column].textContent;
    if (!numeric) return value;
    return value === "" ? -Infinity : Number(value);
  }
  for (const header of table.querySelectorAll("th[data-type]")) {
    header.addEventListener("click", () => {
      const column = header.cellIndex;
      const numeric = header.dataset.type === "number";
      const direction = header.getAttribute("aria-sort") === "ascending" ? -1 : 1;
      for (const other of table.querySelectorAll("th")) other.removeAttribute("aria-sort");
      header.setAttribute("aria-sort", direction > 0 ? "ascending" : "descending");
      const rows = Array.from(body.rows);
      rows.sort((a, b) => {
        const x = key(a, column, numeric), y = key(b, column, numeric);
        const order = numeric ? x - y : collator.compare(x, y);
        return direction * (order || a.dataset.index - b.dataset.index);
      });
      body.append(...rows);
    });
  }

  function filter() {
    const words = search.value.trim().toLowerCase();
    let count = 0;
    for (const row of body.rows) {
      const visible = (status.value === "" || row.dataset.status === status.value)
        && (answer.value === "" || row.dataset.label === answer.value)
        && (words === "" || row.textContent.toLowerCase().includes(words));
      row.hidden = !visible;
      count += visible;
    }
    shown.textContent = `${count} of ${body.rows.length} shown`;
  }
  status.addEventListener("change", filter);
  answer.addEventListener("change", filter);
  search.addEventListener("input", filter);

  body.addEventListener("click", (event) => {
    const opener = event.target.closest("[data-show]");
    if (!opener) return;
    const row = opener.closest("tr");
    const source = row.querySelector(`template.${opener.dataset.show}`);
    const image = dialog.querySelector("img");
    image.src = source ? source.content.querySelector("img").src : opener.src;
    image.alt = `${opener.dataset.show} of ${row.querySelector("td.file").textContent}`;
    dialog.querySelector("figcaption").textContent = image.alt;
    dialog.showModal();
  });
  dialog.addEventListener("click", () => dialog.close());
  filter();
})();
"""
