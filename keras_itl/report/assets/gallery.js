// The run page's gallery: the ranked training instances, filtered, sorted and paged in the browser, and a
// person's keep / drop / relabel decisions exported as decisions.csv for `keras-itl train --decisions`.
// Only the shown page of cards is in the document, so tens of thousands of instances stay responsive.
// The data is the JSON in #gallery-data (keras_itl/report/gallery.py writes it); text is set with
// textContent only, so an id or class name can never become markup.
"use strict";
(function () {
  const source = document.getElementById("gallery-data");
  if (!source) {
    return;
  }
  const data = JSON.parse(source.textContent);
  const rows = data.rows;
  const count = rows.id.length;
  const PAGE_SIZE = 48;
  const $ = (id) => document.getElementById(id);
  const controls = {
    cls: $("filter-class"), decision: $("filter-decision"), sort: $("sort"), prev: $("page-prev"),
    next: $("page-next"), info: $("page-info"), grid: $("gallery"), exportButton: $("export-decisions"),
    clearButton: $("clear-decisions"), csv: $("decisions-csv"), decided: $("decided-count"),
  };
  const decisions = new Map(); // id -> {action, label}, in the order they were made
  let page = 0;
  const orders = {}; // sort key -> the sorted row indices, computed once each

  function restore() {
    try {
      const saved = JSON.parse(window.localStorage.getItem(data.storageKey) || "[]");
      const known = new Set(rows.id);
      for (const [id, decision] of saved) {
        if (known.has(id)) {
          decisions.set(id, decision);
        }
      }
    } catch (error) {
      // no storage (a locked-down browser): decisions then last as long as the page
    }
  }

  function save() {
    try {
      window.localStorage.setItem(data.storageKey, JSON.stringify([...decisions]));
    } catch (error) {
      // as above
    }
  }

  function option(select, value, text) {
    const node = document.createElement("option");
    node.value = value;
    node.textContent = text;
    select.appendChild(node);
    return node;
  }

  function order(key) {
    if (!orders[key]) {
      const [column, direction] = key.split("-");
      const values = rows[column];
      const sign = direction === "asc" ? 1 : -1;
      const indices = Array.from({ length: count }, (_, i) => i);
      indices.sort((a, b) => {
        const x = values[a];
        const y = values[b];
        if (x === null || y === null) {
          return (x === null) - (y === null) || a - b; // missing values last
        }
        return sign * (x - y) || a - b;
      });
      orders[key] = indices;
    }
    return orders[key];
  }

  function matches(i) {
    const cls = controls.cls.value;
    if (cls !== "" && rows.label[i] !== Number(cls)) {
      return false;
    }
    const decided = decisions.get(rows.id[i]);
    switch (controls.decision.value) {
      case "dropped": return rows.dropped[i] === 1;
      case "kept": return rows.dropped[i] === 0;
      case "flipped": return rows.flipped[i] === 1;
      case "decided": return decided !== undefined;
      case "undecided": return decided === undefined;
      default: return true;
    }
  }

  function formatNumber(value, digits) {
    return value === null ? "–" : Number(value).toPrecision(digits);
  }

  function line(parent, text, className) {
    const node = document.createElement("div");
    node.textContent = text;
    if (className) {
      node.className = className;
    }
    parent.appendChild(node);
    return node;
  }

  function decisionControl(i) {
    const select = document.createElement("select");
    select.className = "decision";
    select.setAttribute("aria-label", "decision for " + rows.id[i]);
    option(select, "", "no decision");
    option(select, "keep", "keep");
    option(select, "drop", "drop");
    data.classes.forEach((name, c) => {
      if (c !== rows.label[i]) {
        option(select, "relabel:" + c, "relabel to " + name);
      }
    });
    const current = decisions.get(rows.id[i]);
    if (current) {
      select.value = current.action === "relabel"
        ? "relabel:" + data.classes.indexOf(current.label) : current.action;
    }
    select.addEventListener("change", () => {
      const value = select.value;
      if (value === "") {
        decisions.delete(rows.id[i]);
      } else if (value.startsWith("relabel:")) {
        decisions.set(rows.id[i], { action: "relabel", label: data.classes[Number(value.slice(8))] });
      } else {
        decisions.set(rows.id[i], { action: value, label: "" });
      }
      save();
      render();
    });
    return select;
  }

  function card(i) {
    const node = document.createElement("div");
    const decided = decisions.get(rows.id[i]);
    node.className = "card" + (rows.dropped[i] ? " dropped" : "") + (decided ? " decided-" + decided.action : "");
    node.dataset.id = rows.id[i];
    const image = document.createElement("img");
    image.src = rows.image[i];
    image.alt = rows.id[i];
    node.appendChild(image);
    const facts = document.createElement("div");
    line(facts, rows.id[i], "id");
    line(facts, "given " + data.classes[rows.label[i]]);
    line(facts, "predicted " + data.classes[rows.pred[i]] + " (" + rows.prob[i].toFixed(2) + ")");
    line(facts, "influence " + formatNumber(rows.influence[i], 3));
    line(facts, data.lossLabel + " " + formatNumber(rows.loss[i], 3));
    node.appendChild(facts);
    const badges = document.createElement("div");
    for (const [flag, className, text] of [["flipped", "flipped", "flipped label"],
      ["pinned", "pinned", "decided before this run"]]) {
      if (rows[flag][i]) {
        line(badges, text, "badge " + className);
      }
    }
    node.appendChild(badges);
    const verdict = rows.dropped[i] ? "dropped" : "kept";
    line(node, verdict + ": " + rows.why[i], "status " + verdict);
    node.appendChild(decisionControl(i));
    return node;
  }

  function render() {
    const shown = order(controls.sort.value).filter(matches);
    const pages = Math.max(1, Math.ceil(shown.length / PAGE_SIZE));
    page = Math.min(page, pages - 1);
    const fragment = document.createDocumentFragment();
    for (const i of shown.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE)) {
      fragment.appendChild(card(i));
    }
    controls.grid.replaceChildren(fragment);
    controls.info.textContent = "page " + (page + 1) + " of " + pages + " · " + shown.length + " of " + count +
      " instances";
    controls.prev.disabled = page === 0;
    controls.next.disabled = page >= pages - 1;
    controls.decided.textContent = decisions.size + (decisions.size === 1 ? " decision" : " decisions");
  }

  function csvField(text) {
    return /[",\r\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }

  // The decisions the run was trained with come first (unless decided again here), so each export holds
  // every decision so far and the next run repeats the earlier ones.
  function csvText() {
    const lines = ["id,action,label"];
    for (const row of data.prior) {
      if (!decisions.has(row[0])) {
        lines.push(row.map(csvField).join(","));
      }
    }
    for (const [id, decision] of decisions) {
      lines.push([id, decision.action, decision.label].map(csvField).join(","));
    }
    return lines.join("\n") + "\n";
  }

  function exportDecisions() {
    const text = csvText();
    controls.csv.value = text;
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
    link.download = "decisions.csv";
    document.body.appendChild(link);
    link.click();
    link.remove();
  }

  option(controls.cls, "", "every class");
  data.classes.forEach((name, c) => option(controls.cls, String(c), name));
  for (const [value, text] of [["", "every decision"], ["dropped", "dropped by the run"], ["kept", "kept by the run"],
    ["flipped", "flipped labels"], ["decided", "decided by you"], ["undecided", "not decided yet"]]) {
    option(controls.decision, value, text);
  }
  const sorts = [["loss-desc", "highest " + data.lossLabel + " first"], ["loss-asc", "lowest " + data.lossLabel + " first"]];
  if (data.hasInfluence) {
    sorts.unshift(["influence-asc", "most harmful first (influence)"], ["influence-desc", "most helpful first (influence)"]);
  }
  for (const [value, text] of sorts) {
    option(controls.sort, value, text);
  }
  for (const select of [controls.cls, controls.decision, controls.sort]) {
    select.addEventListener("change", () => {
      page = 0;
      render();
    });
  }
  controls.prev.addEventListener("click", () => {
    page -= 1;
    render();
  });
  controls.next.addEventListener("click", () => {
    page += 1;
    render();
  });
  controls.exportButton.addEventListener("click", exportDecisions);
  controls.clearButton.addEventListener("click", () => {
    decisions.clear();
    save();
    render();
  });
  restore();
  render();
})();
