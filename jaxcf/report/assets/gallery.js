/* jaxcf HTML report: the gallery, a page of rows at a time.
 *
 * Its state lives in the address (#gallery?m=0&src=3&tgt=5&ok=1&sort=l1&desc=1&p=2), so a
 * view can be linked to and the browser's back button works. A selection (filters and order)
 * is computed once from the methods' columns (data/m<i>/rows.js) and kept while paging; a page
 * loads only the blocks its rows are in.
 */
(function () {
  "use strict";
  var J = window.JAXCF;
  var section = null;
  var controls = null;
  var cache = { key: null, sel: null };
  var token = 0;

  function methodsOf(site, st) {
    return st.m === "" ? site.methods.map(function (_, i) { return i; }) : [Number(st.m)];
  }

  function readState(site, params) {
    function int(name, n) {
      var v = params.get(name);
      return v !== null && /^\d+$/.test(v) && (n === undefined || Number(v) < n) ? v : "";
    }
    var sort = params.get("sort") || "";
    var known = site.metrics.some(function (m) { return m.key === sort; });
    return {
      m: int("m", site.methods.length),
      src: int("src"),
      tgt: int("tgt"),
      ok: params.get("ok") === "1" || params.get("ok") === "0" ? params.get("ok") : "",
      sort: known ? sort : "",
      desc: params.get("desc") === "1",
      p: Number(int("p") || "0"),
    };
  }

  function writeState(st) {
    var q = new URLSearchParams();
    ["m", "src", "tgt", "ok", "sort"].forEach(function (k) {
      if (st[k] !== "") q.set(k, st[k]);
    });
    if (st.desc) q.set("desc", "1");
    if (st.p) q.set("p", String(st.p));
    location.hash = "gallery?" + q.toString();
  }

  function option(select, value, text) {
    var o = J.el("option", null, text);
    o.value = value;
    select.appendChild(o);
  }

  function field(form, label, name, options) {
    var wrap = J.el("label", null, label + " ");
    var select = J.el("select");
    select.name = name;
    options.forEach(function (o) {
      option(select, o[0], o[1]);
    });
    wrap.appendChild(select);
    form.appendChild(wrap);
    return select;
  }

  function buildControls(site) {
    var form = J.el("form", "controls");
    form.id = "controls";
    var classes = (site.classes || []).map(function (c, i) { return [String(i), c]; });
    var s = {};
    s.m = field(form, "method", "m", [["", "all methods"]].concat(
      site.methods.map(function (m, i) { return [String(i), m.label]; })
    ));
    if (site.methods.some(function (m) { return m.source; })) {
      s.src = field(form, "source class", "src", [["", "any"]].concat(classes));
    }
    if (site.methods.some(function (m) { return m.target !== "value"; })) {
      s.tgt = field(form, "target class", "tgt", [["", "any"]].concat(classes));
    }
    s.ok = field(form, "success", "ok", [["", "any"], ["1", "found"], ["0", "not found"]]);
    s.sort = field(form, "sort by", "sort", [["", "row"]].concat(
      site.metrics.map(function (m) { return [m.key, m.label]; })
    ));
    s.desc = field(form, "order", "desc", [["0", "ascending"], ["1", "descending"]]);
    form.addEventListener("change", function () {
      var st = { p: 0, desc: s.desc.value === "1" };
      ["m", "src", "tgt", "ok", "sort"].forEach(function (k) {
        st[k] = s[k] ? s[k].value : "";
      });
      writeState(st);
    });
    form.addEventListener("submit", function (e) {
      e.preventDefault();
    });
    return { form: form, selects: s };
  }

  function pager(cls) {
    var nav = J.el("nav", "pager " + cls);
    nav.appendChild(J.el("a", "prev", "\u2190 previous"));
    nav.appendChild(J.el("span", "status"));
    nav.appendChild(J.el("a", "next", "next \u2192"));
    return nav;
  }

  function build(main, site) {
    section = J.el("section", "view");
    section.id = "gallery-view";
    controls = buildControls(site);
    section.appendChild(controls.form);
    section.appendChild(pager("top"));
    var cards = J.el("div", "cards");
    cards.id = "cards";
    section.appendChild(cards);
    section.appendChild(pager("bottom"));
    main.appendChild(section);
  }

  // The rows a state shows, in order: parallel arrays of method index and row.
  function select(site, st) {
    var id = [st.m, st.src, st.tgt, st.ok, st.sort, st.desc].join("|");
    if (cache.key === id) return Promise.resolve(cache.sel);
    var ms = methodsOf(site, st);
    return Promise.all(
      ms.map(function (i) {
        return J.load("m" + i + "/rows", site.methods[i].dir + "/rows.js", false);
      })
    ).then(function (datas) {
      var parts = [], total = 0;
      datas.forEach(function (d, k) {
        var cols = J.columns(d), m = site.methods[ms[k]];
        var src = cols.get("source"), tgt = m.target === "value" ? null : cols.get("target");
        var ok = cols.get("success"), keep = new Uint32Array(d.n), c = 0;
        var s = st.src === "" ? -2 : Number(st.src), t = st.tgt === "" ? -2 : Number(st.tgt);
        var o = st.ok === "" ? -2 : Number(st.ok);
        for (var r = 0; r < d.n; r++) {
          if (s !== -2 && (!src || src[r] !== s)) continue;
          if (t !== -2 && (!tgt || tgt[r] !== t)) continue;
          if (o !== -2 && ok[r] !== o) continue;
          keep[c++] = r;
        }
        parts.push(keep.subarray(0, c));
        total += c;
      });
      var meth = new Uint16Array(total), rows = new Uint32Array(total), key = null, j = 0;
      if (st.sort) key = new Float64Array(total);
      parts.forEach(function (p, k) {
        meth.fill(ms[k], j, j + p.length);
        rows.set(p, j);
        if (key) {
          var col = J.columns(datas[k]).get(st.sort);
          for (var i = 0; i < p.length; i++) key[j + i] = col ? col[p[i]] : NaN;
        }
        j += p.length;
      });
      var order = new Uint32Array(total);
      for (var i = 0; i < total; i++) order[i] = i;
      var sign = st.desc ? -1 : 1;
      order.sort(function (a, b) {
        if (key) {
          var x = key[a], y = key[b], xn = x !== x, yn = y !== y;
          if (xn !== yn) return xn ? 1 : -1; // missing values last, either way
          if (!xn && x !== y) return x < y ? -sign : sign;
        }
        return (rows[a] - rows[b]) * (key ? 1 : sign) || meth[a] - meth[b];
      });
      cache = { key: id, sel: { meth: meth, rows: rows, order: order, n: total } };
      return cache.sel;
    });
  }

  function metricLine(site, cols, row) {
    var dl = J.el("dl", "metrics");
    site.metrics.forEach(function (m) {
      var col = cols.get(m.key);
      if (!col || m.flag) return;
      var pair = J.el("div"); // a metric's name and value stay on one line
      pair.appendChild(J.el("dt", null, m.label));
      pair.appendChild(J.el("dd", null, J.num(col[row])));
      dl.appendChild(pair);
    });
    return dl;
  }

  function card(site, i, row, images, loaded) {
    var m = site.methods[i];
    var cols = J.columns(J.registry("m" + i + "/rows"));
    var ok = cols.get("success")[row] === 1;
    var div = J.el("article", "card " + (ok ? "found" : "failed"));
    div.setAttribute("data-method", String(i));
    div.setAttribute("data-row", String(row));
    var head = J.el("header", "card-head");
    head.appendChild(J.el("span", "method", m.label));
    var q = cols.get("query")[row], c = cols.get("cf")[row];
    head.appendChild(J.el("span", "query", "query " + q + (c ? " #" + c : "")));
    if (m.target !== "value") {
      var src = cols.get("source");
      var t = J.className(site, cols.get("target")[row]);
      var text = src ? J.className(site, src[row]) + " \u2192 " + t : "\u2192 " + t;
      head.appendChild(J.el("span", "classes", text));
    } else {
      head.appendChild(J.el("span", "classes", "target " + J.num(cols.get("target")[row])));
    }
    head.appendChild(J.el("span", "badge", ok ? "\u2713 found" : "\u2717 not found"));
    var valid = cols.get("valid");
    if (valid) head.appendChild(J.el("span", "badge", valid[row] ? "valid" : "not valid"));
    div.appendChild(head);
    var v = J.views.view(m, i, row, images, loaded);
    if (v) div.appendChild(v);
    div.appendChild(metricLine(site, cols, row));
    var foot = J.el("p", "files");
    foot.appendChild(J.link(J.rowsFile(m), "row " + row + " of rows.csv", "file"));
    if (m.link) {
      foot.appendChild(document.createTextNode(" \u00b7 "));
      foot.appendChild(J.link(m.link, m.label, "file", "the files of " + m.label));
    }
    div.appendChild(foot);
    return div;
  }

  function setPager(nav, st, pages, first, last, n) {
    var prev = nav.querySelector(".prev"), next = nav.querySelector(".next");
    function go(a, p) {
      if (p < 0 || p >= pages) {
        a.removeAttribute("href");
        a.onclick = null;
        return;
      }
      a.setAttribute("href", "#");
      a.onclick = function (e) {
        e.preventDefault();
        writeState(Object.assign({}, st, { p: p }));
      };
    }
    go(prev, st.p - 1);
    go(next, st.p + 1);
    nav.querySelector(".status").textContent = n
      ? "page " + (st.p + 1) + " of " + pages + " \u00b7 rows " + first + "\u2013" + last + " of " + n
      : "no rows match";
  }

  function show(main, site, params) {
    if (!section) build(main, site);
    section.hidden = false;
    var st = readState(site, params);
    Object.keys(controls.selects).forEach(function (k) {
      controls.selects[k].value = k === "desc" ? (st.desc ? "1" : "0") : st[k];
    });
    var mine = ++token;
    var started = performance.now();
    J.setState("loading");
    select(site, st)
      .then(function (sel) {
        var pages = Math.max(1, Math.ceil(sel.n / site.page_size));
        st.p = Math.min(st.p, pages - 1);
        var page = sel.order.subarray(st.p * site.page_size, Math.min(sel.n, (st.p + 1) * site.page_size));
        var files = new Map();
        page.forEach(function (e) {
          var f = J.views.blockFile(site.methods[sel.meth[e]], sel.meth[e], sel.rows[e]);
          if (f) files.set(f.id, f);
        });
        var loads = Array.from(files.values()).map(function (f) {
          return J.load(f.id, f.src, true).then(function (d) { return [f.id, d]; });
        });
        return Promise.all(loads).then(function (pairs) {
          if (mine !== token) return;
          var loaded = new Map(pairs), images = [];
          var cards = document.getElementById("cards");
          var frag = document.createDocumentFragment();
          page.forEach(function (e) {
            frag.appendChild(card(site, sel.meth[e], sel.rows[e], images, loaded));
          });
          cards.replaceChildren(frag);
          var first = sel.n ? st.p * site.page_size + 1 : 0;
          section.querySelectorAll(".pager").forEach(function (nav) {
            setPager(nav, st, pages, first, first + page.length - 1, sel.n);
          });
          return Promise.all(images.map(function (img) {
            return img.decode().catch(function () {
              throw new Error("cannot load " + img.getAttribute("src"));
            });
          }));
        });
      })
      .then(function () {
        if (mine !== token) return;
        J.lastRenderMs = performance.now() - started;
        J.renders += 1;
        J.setState("ready");
      })
      .catch(J.fail);
  }

  function hide() {
    if (section) section.hidden = true;
  }

  J.gallery = { show: show, hide: hide };
})();
