/* jaxcf HTML report: data loading, shared helpers, routing and the summary page.
 *
 * Every string of the data (method labels, class and column names, categories, titles, file
 * names) reaches the page as text: textContent, attribute values and SVG text. Nothing here
 * parses HTML (no innerHTML, outerHTML, insertAdjacentHTML or document.write). Data files are
 * scripts that register themselves with JAXCF_DATA.push({...}), loaded on demand with
 * <script src>, since a page opened from file:// cannot fetch().
 */
(function () {
  "use strict";

  var registry = new Map();
  var pending = new Map();
  var blocks = []; // ids of loaded blocks, oldest first; old ones are forgotten
  var MAX_BLOCKS = 512;

  window.JAXCF_DATA = {
    push: function (d) {
      if (d && typeof d.id === "string") registry.set(d.id, d);
    },
  };

  function load(id, src, isBlock) {
    if (registry.has(id)) return Promise.resolve(registry.get(id));
    if (pending.has(id)) return pending.get(id);
    var p = new Promise(function (resolve, reject) {
      var s = document.createElement("script");
      s.src = src;
      s.onload = function () {
        s.remove();
        pending.delete(id);
        if (!registry.has(id)) return reject(new Error("no data for " + id + " in " + src));
        if (isBlock) {
          blocks.push(id);
          while (blocks.length > MAX_BLOCKS) registry.delete(blocks.shift());
        }
        resolve(registry.get(id));
      };
      s.onerror = function () {
        s.remove();
        pending.delete(id);
        reject(new Error("cannot load " + src));
      };
      document.head.appendChild(s);
    });
    pending.set(id, p);
    return p;
  }

  // ---- helpers --------------------------------------------------------------------------

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function isRelative(href) {
    return (
      typeof href === "string" &&
      href !== "" &&
      !/^[a-zA-Z][a-zA-Z0-9+.\-]*:/.test(href) &&
      !/^[\/\\]/.test(href)
    );
  }

  function link(href, text, cls, title) {
    var a = el("a", cls, text);
    if (isRelative(href)) a.setAttribute("href", href);
    if (title) a.title = String(title);
    return a;
  }

  var SVGNS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVGNS, tag);
    Object.keys(attrs || {}).forEach(function (k) {
      e.setAttribute(k, String(attrs[k]));
    });
    if (text !== undefined) e.textContent = String(text);
    return e;
  }

  function decode(b64, t) {
    var bin = atob(b64);
    var bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    if (t === "f4") return new Float32Array(bytes.buffer);
    if (t === "i4") return new Int32Array(bytes.buffer);
    return bytes;
  }

  function columns(d) {
    if (!d._columns) {
      var m = new Map();
      d.columns.forEach(function (c) {
        m.set(c.name, decode(c.b, c.t));
      });
      d._columns = m;
    }
    return d._columns;
  }

  var DASH = "\u2014";
  function num(v) {
    if (typeof v !== "number" || !isFinite(v)) return DASH;
    var a = Math.abs(v);
    if (a >= 1e7) return v.toExponential(3);
    if (Number.isInteger(v)) return String(v);
    if (a >= 100) return v.toFixed(1);
    if (a >= 1) return v.toFixed(2);
    if (a >= 0.01) return v.toFixed(3);
    return v.toExponential(2);
  }
  function pct(v) {
    return typeof v === "number" && isFinite(v) ? (100 * v).toFixed(1) + "%" : DASH;
  }
  function secs(v) {
    if (typeof v !== "number" || !isFinite(v)) return DASH;
    if (v < 1e-3) return (v * 1e6).toFixed(1) + " \u00b5s";
    if (v < 1) return (v * 1e3).toFixed(1) + " ms";
    return v.toFixed(2) + " s";
  }

  function className(site, c) {
    if (c < 0) return "all";
    return site.classes && c < site.classes.length ? site.classes[c] : String(c);
  }

  function rowsFile(method) {
    return method.dir + "/rows.csv";
  }

  // Links to the files behind a figure or table: the given files and each method's own.
  function files(site, methods, label) {
    var p = el("p", "files", label || "Files: ");
    var items = [];
    site.links.forEach(function (l) {
      items.push(link(l.href, l.name, "file"));
    });
    methods.forEach(function (m) {
      if (m.link) items.push(link(m.link, m.label, "file", "the files of " + m.label));
      items.push(link(rowsFile(m), "rows.csv", "file", "per-row values of " + m.label));
    });
    items.forEach(function (a, i) {
      if (i) p.appendChild(document.createTextNode(" \u00b7 "));
      p.appendChild(a);
    });
    return p;
  }

  function setState(state) {
    document.documentElement.setAttribute("data-state", state);
  }

  // ---- summary page ---------------------------------------------------------------------

  var COLUMNS = [
    ["rows", "rows", num],
    ["queries", "queries", num],
    ["success_rate", "success", pct],
    ["valid_rate", "valid", pct],
    ["l0", "L0", num],
    ["l1", "L1", num],
    ["l2", "L2", num],
    ["nll", "realism NLL", num],
    ["changed", "features changed", num],
    ["n_iter", "iterations", num],
    ["seconds_per_cf", "time / CF", secs],
  ];

  function summaryTable(site) {
    var shown = COLUMNS.filter(function (c) {
      return site.methods.some(function (m) {
        var v = m.summary[c[0]];
        return typeof v === "number" && isFinite(v);
      });
    });
    var table = el("table", "summary");
    var head = table.createTHead().insertRow();
    head.appendChild(el("th", null, "method"));
    shown.forEach(function (c) {
      head.appendChild(el("th", "num", c[1]));
    });
    var body = table.createTBody();
    site.methods.forEach(function (m, i) {
      var tr = body.insertRow();
      var name = el("th", "method");
      name.appendChild(link("#gallery?m=" + i, m.label, null, "the gallery of " + m.label));
      tr.appendChild(name);
      var behind = m.link || rowsFile(m);
      shown.forEach(function (c) {
        var td = el("td", "num");
        td.appendChild(link(behind, c[2](m.summary[c[0]]), null, "from " + behind));
        tr.appendChild(td);
      });
    });
    return table;
  }

  function histogram(h, counts, edges) {
    var W = 170, H = 48, T = 11, B = 13;
    var lo = edges[0], hi = edges[edges.length - 1];
    var top = Math.max.apply(null, counts.concat([1]));
    var size = { viewBox: "0 0 " + W + " " + (T + H + B), width: W, height: T + H + B, role: "img" };
    var s = svg("svg", size);
    s.appendChild(svg("title", {}, h.label + " (" + h.over + ")"));
    counts.forEach(function (c, k) {
      var x0 = ((edges[k] - lo) / (hi - lo)) * W;
      var x1 = ((edges[k + 1] - lo) / (hi - lo)) * W;
      var bh = (c / top) * H;
      var r = svg("rect", { x: x0, y: T + H - bh, width: Math.max(0.5, x1 - x0 - 0.5), height: bh });
      var range = h.unit ? num(edges[k] + 0.5) : "[" + num(edges[k]) + ", " + num(edges[k + 1]) + ")";
      r.appendChild(svg("title", {}, range + ": " + c + " rows"));
      s.appendChild(r);
    });
    s.appendChild(svg("line", { x1: 0, y1: T + H, x2: W, y2: T + H, class: "axis" }));
    var first = h.unit ? lo + 0.5 : lo, last = h.unit ? hi - 0.5 : hi;
    s.appendChild(svg("text", { x: 0, y: T + H + B - 2, class: "tick" }, num(first)));
    s.appendChild(svg("text", { x: W, y: T + H + B - 2, class: "tick end" }, num(last)));
    s.appendChild(svg("text", { x: W, y: 8, class: "tick end" }, "max " + top + " rows"));
    return s;
  }

  // One row per method, one column per metric; each metric's bins are shared by all methods.
  function distributions(site) {
    var table = el("table", "hists");
    var head = table.createTHead().insertRow();
    head.appendChild(el("th", null, "method"));
    site.histograms.forEach(function (h) {
      var th = el("th", null, h.label);
      th.appendChild(el("span", "over", h.over));
      head.appendChild(th);
    });
    var body = table.createTBody();
    site.methods.forEach(function (m, i) {
      var tr = body.insertRow();
      var name = el("th", "method");
      name.appendChild(el("span", null, m.label));
      name.appendChild(el("br"));
      name.appendChild(link(m.link || rowsFile(m), "files", "file", "from " + (m.link || rowsFile(m))));
      tr.appendChild(name);
      site.histograms.forEach(function (h) {
        var td = el("td", "hist");
        var counts = h.counts[i];
        if (counts) {
          var a = link("#gallery?m=" + i + "&sort=" + encodeURIComponent(h.key), null, "figlink");
          a.title = "the gallery of " + m.label + ", sorted by " + h.label;
          a.appendChild(histogram(h, counts, h.edges));
          td.appendChild(a);
        }
        tr.appendChild(td);
      });
    });
    var box = el("div", "scroll");
    box.appendChild(table);
    return box;
  }

  function matrix(site, i, mx) {
    var m = site.methods[i];
    var fig = el("figure", "matrix");
    fig.appendChild(el("figcaption", null, m.label));
    var table = el("table", "matrix");
    var head = table.createTHead().insertRow();
    head.appendChild(el("th", "corner", m.source ? "source \\ target" : "target"));
    mx.targets.forEach(function (t) {
      head.appendChild(el("th", null, className(site, t)));
    });
    var body = table.createTBody();
    mx.sources.forEach(function (s, a) {
      var tr = body.insertRow();
      tr.appendChild(el("th", null, className(site, s)));
      mx.targets.forEach(function (t, b) {
        var td = el("td", "cell");
        var n = mx.n[a][b];
        if (n > 0) {
          var rate = mx.success[a][b];
          var href = "#gallery?m=" + i + "&tgt=" + t + (s >= 0 ? "&src=" + s : "");
          var title = n + " rows; success " + pct(rate) + "; mean L1 " + num(mx.l1[a][b]);
          var a2 = link(href, Math.round(100 * rate) + "%", null, title);
          if (mx.l1[a][b] !== null) a2.appendChild(el("span", "l1", num(mx.l1[a][b])));
          td.appendChild(a2);
          td.style.backgroundColor = "hsla(" + Math.round(120 * rate) + ", 65%, 45%, 0.28)";
        }
        tr.appendChild(td);
      });
    });
    fig.appendChild(table);
    fig.appendChild(files(site, [m], "Files: "));
    return fig;
  }

  function summaryView(site) {
    var sec = el("section", "view");
    sec.id = "summary-view";
    sec.appendChild(el("h2", null, "Methods"));
    sec.appendChild(summaryTable(site));
    sec.appendChild(
      el(
        "p",
        "note",
        "Success: counterfactuals found. L0, L1, L2, realism NLL and features changed: means " +
          "over the successful rows; iterations: the mean over all rows; time: seconds of " +
          "compute per counterfactual. Every number links to the files behind it."
      )
    );
    sec.appendChild(files(site, site.methods));
    if (site.histograms.length) {
      sec.appendChild(el("h2", null, "Distributions"));
      sec.appendChild(distributions(site));
    }
    var mats = el("div", "matrices");
    site.matrices.forEach(function (mx, i) {
      if (mx) mats.appendChild(matrix(site, i, mx));
    });
    if (mats.childNodes.length) {
      sec.appendChild(el("h2", null, "Success rate \u00b7 mean L1 by source and target class"));
      mats.id = "matrices";
      sec.appendChild(mats);
    }
    return sec;
  }

  // ---- routing --------------------------------------------------------------------------

  var summaryEl = null;

  function route() {
    var h = location.hash.replace(/^#/, "");
    var q = h.indexOf("?");
    var view = q < 0 ? h : h.slice(0, q);
    return {
      view: view === "gallery" ? "gallery" : "summary",
      params: new URLSearchParams(q < 0 ? "" : h.slice(q + 1)),
    };
  }

  function fail(err) {
    setState("error");
    var main = document.getElementById("main");
    var p = el("p", "error", "The report could not load: " + (err && err.message ? err.message : err));
    main.insertBefore(p, main.firstChild);
    if (window.console) console.error(err);
  }

  function render() {
    var site = registry.get("site");
    if (!site) return fail(new Error("data/site.js is missing"));
    var r = route();
    var main = document.getElementById("main");
    document.getElementById("nav-summary").className = r.view === "summary" ? "active" : "";
    document.getElementById("nav-gallery").className = r.view === "gallery" ? "active" : "";
    if (r.view === "summary") {
      if (!summaryEl) {
        summaryEl = summaryView(site);
        main.appendChild(summaryEl);
      }
      summaryEl.hidden = false;
      if (JAXCF.gallery) JAXCF.gallery.hide();
      setState("ready");
    } else {
      if (summaryEl) summaryEl.hidden = true;
      JAXCF.gallery.show(main, site, r.params);
    }
  }

  function start() {
    var site = registry.get("site");
    if (!site) return fail(new Error("data/site.js is missing"));
    document.title = site.title;
    document.getElementById("title").textContent = site.title;
    var header = document.getElementById("files");
    if (site.links.length) header.appendChild(files(site, [], "Files: "));
    window.addEventListener("hashchange", render);
    render();
  }

  window.JAXCF = {
    load: load,
    registry: function (id) {
      return registry.get(id);
    },
    el: el,
    link: link,
    svg: svg,
    decode: decode,
    columns: columns,
    num: num,
    pct: pct,
    className: className,
    rowsFile: rowsFile,
    setState: setState,
    fail: fail,
    renders: 0,
  };
  setState("loading");
  document.addEventListener("DOMContentLoaded", start);
})();
