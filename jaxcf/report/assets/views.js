/* jaxcf HTML report: one row's view in the gallery, by the kind of its data.
 *
 * image:  query, counterfactual and signed difference, cut from the block's PNG sprite sheet
 *         (row i of a sheet holds the three pictures of the block's row i);
 * series: original (solid) and counterfactual (dashed) curves on a canvas, from the block's
 *         data file;
 * table:  the features that changed, with their old and new values, from the block's data file.
 */
(function () {
  "use strict";
  var J = window.JAXCF;
  var THUMB = 96; // CSS pixels of a picture's longer side

  function blockOf(method, row) {
    return Math.floor(row / method.view.block);
  }

  function pad(b) {
    var s = String(b);
    while (s.length < 5) s = "0" + s;
    return s;
  }

  // The block data file a row's view needs, or null (pictures load as images).
  function blockFile(method, i, row) {
    var b = blockOf(method, row);
    var kind = method.view.kind;
    if (kind !== "series" && kind !== "table") return null;
    return { id: "m" + i + "/" + kind + "/" + b, src: method.dir + "/" + kind + "-" + pad(b) + ".js" };
  }

  function imageView(method, row, images) {
    var v = method.view;
    var scale = Math.max(1, Math.floor(THUMB / Math.max(v.h, v.w))); // whole pixels
    var src = method.dir + "/img-" + pad(blockOf(method, row)) + ".png";
    var k = row % v.block;
    var box = J.el("div", "pictures");
    v.panels.forEach(function (name, col) {
      var fig = J.el("figure", "thumb-fig");
      var clip = J.el("div", "thumb");
      clip.style.width = Math.round(v.w * scale) + "px";
      clip.style.height = Math.round(v.h * scale) + "px";
      var img = document.createElement("img");
      img.alt = name;
      img.src = src;
      img.style.width = v.w * 3 * scale + "px";
      img.style.left = -col * v.w * scale + "px";
      img.style.top = -k * v.h * scale + "px";
      clip.appendChild(img);
      images.push(img);
      fig.appendChild(clip);
      fig.appendChild(J.el("figcaption", null, name));
      box.appendChild(fig);
    });
    return box;
  }

  function floats(d, key) {
    var cache = "_" + key;
    if (!d[cache]) d[cache] = J.decode(d[key], "f4");
    return d[cache];
  }

  var ONE = ["#1f77b4", "#d62728"];
  var MANY = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"];

  function seriesView(method, row, data) {
    var v = method.view;
    var T = v.steps, C = v.channels, k = row % v.block, off = k * T * C;
    var x = floats(data, "x"), cf = floats(data, "cf");
    var W = 300, H = 120, P = 4;
    var canvas = document.createElement("canvas");
    var dpr = window.devicePixelRatio || 1;
    canvas.width = W * dpr;
    canvas.height = H * dpr;
    canvas.style.width = W + "px";
    canvas.style.height = H + "px";
    canvas.className = "series";
    var lo = Infinity, hi = -Infinity;
    for (var i = off; i < off + T * C; i++) {
      [x[i], cf[i]].forEach(function (v) {
        if (isFinite(v)) {
          lo = Math.min(lo, v);
          hi = Math.max(hi, v);
        }
      });
    }
    if (!(hi > lo)) {
      if (!isFinite(lo)) lo = 0;
      hi = lo + 1;
      lo -= 1;
    }
    var ctx = canvas.getContext("2d");
    ctx.scale(dpr, dpr);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, W, H);
    function px(t) {
      return P + (t / Math.max(1, T - 1)) * (W - 2 * P);
    }
    function py(y) {
      return H - P - ((y - lo) / (hi - lo)) * (H - 2 * P);
    }
    function curve(a, c, dashed, colour) {
      ctx.beginPath();
      ctx.setLineDash(dashed ? [4, 3] : []);
      ctx.strokeStyle = colour;
      ctx.lineWidth = 1.2;
      var down = false; // a non-finite value leaves a gap
      for (var t = 0; t < T; t++) {
        var v = a[off + t * C + c];
        if (!isFinite(v)) {
          down = false;
          continue;
        }
        if (down) ctx.lineTo(px(t), py(v));
        else ctx.moveTo(px(t), py(v));
        down = true;
      }
      ctx.stroke();
    }
    for (var c = 0; c < C; c++) {
      var colours = C === 1 ? ONE : [MANY[c % MANY.length], MANY[c % MANY.length]];
      curve(x, c, false, colours[0]);
      curve(cf, c, true, colours[1]);
    }
    var box = J.el("div", "curves");
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", "original (solid) and counterfactual (dashed)");
    box.appendChild(canvas);
    var legend = J.el("p", "legend", "\u2014 original   - - counterfactual   range ");
    legend.appendChild(document.createTextNode(J.num(lo) + " to " + J.num(hi)));
    box.appendChild(legend);
    return box;
  }

  function tableView(method, row, data) {
    var changed = data.rows[row % method.view.block];
    var names = method.view.columns;
    if (!changed.length) return J.el("p", "note", "No feature changed.");
    var table = J.el("table", "changes");
    var head = table.createTHead().insertRow();
    ["feature", "query", "counterfactual"].forEach(function (h) {
      head.appendChild(J.el("th", null, h));
    });
    var body = table.createTBody();
    changed.forEach(function (c) {
      var tr = body.insertRow();
      tr.appendChild(J.el("th", null, names[c[0]]));
      tr.appendChild(J.el("td", "old", c[1]));
      tr.appendChild(J.el("td", "new", c[2]));
    });
    return table;
  }

  // The view of method i's row: `loaded` maps block ids to the data files already loaded for
  // the page; pictures are added to `images` so that the page can wait for them.
  function view(method, i, row, images, loaded) {
    var kind = method.view.kind;
    if (kind === "image") return imageView(method, row, images);
    var file = blockFile(method, i, row);
    if (!file) return null;
    var data = loaded.get(file.id);
    return kind === "series" ? seriesView(method, row, data) : tableView(method, row, data);
  }

  J.views = { blockFile: blockFile, view: view };
})();
