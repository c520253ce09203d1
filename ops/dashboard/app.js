/* cgalpha ops dashboard. Polls api/snapshot every second (a relative URL: the same server, and a
 * path prefix added by a reverse proxy is kept), keeps five minutes of history in memory,
 * computes the rates from the labs' processed counts, draws the charts on <canvas> and the
 * regime timeline as inline SVG. No framework, nothing fetched from anywhere else.
 *
 * Every figure carries a stable id (or data-* attributes) and its raw value in data-value, so that
 * tests/system/50_dashboard.sh can read it from the DOM. */
(function () {
  'use strict';

  var POLL_MS = 1000;
  var WINDOW_MS = 5 * 60 * 1000;  /* chart history */
  var RATE_WINDOW_MS = 6000;      /* heartbeats (every 2 s) a lab's rate is measured over */
  var MAX_LANES = 40;             /* regime lanes drawn (the rest are counted) */
  var QUEUES = ['analysis', 'reports'];
  var COLORS = {
    analysis: '#58a6ff', reports: '#bc8cff', thr: '#3fb950',
    grid: '#2a313c', axis: '#8b949e', lane: '#1c2330'
  };
  var REGIME_COLORS = {
    bull: '#3fb950', bear: '#f85149', sideways: '#58a6ff', turbulent: '#d29922', unknown: '#6e7681'
  };
  var SVG_NS = 'http://www.w3.org/2000/svg'; /* an XML namespace name, never fetched */

  var history = [];        /* {t, analysis, reports, p, thr}, oldest first (p: processed) */
  var beats = new Map();   /* lab id -> [{ts, processed}] distinct heartbeats, oldest first */
  var rates = new Map();   /* lab id -> tasks/s (null until two heartbeats were seen) */
  var lastTaken = -1;
  var polls = 0;
  var snapshots = 0;
  var latest = null;

  function $(id) { return document.getElementById(id); }

  /* ---- formatting ------------------------------------------------------------------------- */
  function fmtInt(n) { return Number(n).toLocaleString('en-US'); }
  function fmtRate(r) {
    if (r === null || r === undefined) return '\u2014';
    return r >= 100 ? fmtInt(Math.round(r)) : r.toFixed(1);
  }
  function fmtCompact(v) {
    var a = Math.abs(v);
    if (a >= 1e9) return trim(v / 1e9) + 'G';
    if (a >= 1e6) return trim(v / 1e6) + 'M';
    if (a >= 1e3) return trim(v / 1e3) + 'k';
    return trim(v);
  }
  function trim(v) { return String(Math.round(v * 100) / 100); }
  function fmtBytes(b) {
    if (b >= 1073741824) return (b / 1073741824).toFixed(1) + ' GiB';
    if (b >= 1048576) return (b / 1048576).toFixed(1) + ' MiB';
    return (b / 1024).toFixed(1) + ' KiB';
  }
  function fmtAge(s) {
    if (s < 60) return s.toFixed(1) + ' s';
    if (s < 3600) return (s / 60).toFixed(1) + ' min';
    return (s / 3600).toFixed(1) + ' h';
  }
  function pad2(n) { return n < 10 ? '0' + n : String(n); }
  function fmtUtc(ms, withDate) {
    var d = new Date(ms);
    var hm = pad2(d.getUTCHours()) + ':' + pad2(d.getUTCMinutes());
    if (!withDate) return hm;
    return d.getUTCFullYear() + '-' + pad2(d.getUTCMonth() + 1) + '-' + pad2(d.getUTCDate()) +
      ' ' + hm;
  }
  function fmtClock(ms) {
    var d = new Date(ms);
    return pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + ':' + pad2(d.getSeconds());
  }

  /* Sets a figure: its raw value in data-value, its text formatted. */
  function setFig(el, value, text) {
    if (!el) return;
    el.dataset.value = value === null || value === undefined ? '' : String(value);
    el.textContent = text !== undefined ? text : (value === null ? '\u2014' : fmtInt(value));
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVG_NS, tag);
    for (var k in attrs) if (Object.prototype.hasOwnProperty.call(attrs, k)) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  /* ---- rates and history ------------------------------------------------------------------ */
  function updateRates(snap) {
    var seen = new Set();
    (snap.labs || []).forEach(function (lab) {
      seen.add(lab.id);
      var hb = snap.taken_ms - lab.age_s * 1000; /* when the lab wrote this heartbeat */
      var list = beats.get(lab.id) || [];
      var last = list[list.length - 1];
      if (last && lab.processed < last.processed) list = []; /* restarted: counts anew */
      if (!last || hb - last.ts > 200 || lab.processed !== last.processed) {
        list.push({ ts: hb, processed: lab.processed });
      }
      while (list.length > 2 && list[1].ts <= hb - RATE_WINDOW_MS) list.shift();
      beats.set(lab.id, list);
      var first = list[0], end = list[list.length - 1];
      var dt = (end.ts - first.ts) / 1000;
      rates.set(lab.id, list.length >= 2 && dt > 0.2 ? Math.max(0, end.processed - first.processed) / dt
        : null);
    });
    Array.from(beats.keys()).forEach(function (id) {
      if (!seen.has(id)) { beats.delete(id); rates.delete(id); }
    });
  }

  function depth(q) { return q ? q.lag + q.pending : 0; }

  function addPoint(pt) {
    var n = history.length;
    if (n && pt.t <= history[n - 1].t) {
      if (history.some(function (h) { return h.t === pt.t; })) return;
      history.push(pt);
      history.sort(function (a, b) { return a.t - b.t; });
    } else {
      history.push(pt);
    }
    var last = history[history.length - 1].t;
    while (history.length && history[0].t < last - WINDOW_MS - RATE_WINDOW_MS) history.shift();
  }

  function record(snap) {
    var qs = snap.queues, p = 0;
    (snap.labs || []).forEach(function (lab) { p += lab.processed; });
    addPoint({
      t: snap.taken_ms,
      analysis: qs ? depth(qs.analysis) : null,
      reports: qs ? depth(qs.reports) : null,
      p: p
    });
  }

  /* Throughput at each reading: the labs' processed counts over the last RATE_WINDOW_MS (they
   * come with heartbeats every 2 s, so one second alone would jump between 0 and twice the rate);
   * a count that went down (a lab gone or restarted) reads as 0. */
  function computeThroughput() {
    var j = 0;
    for (var i = 0; i < history.length; i++) {
      var h = history[i];
      if (i && h.t - history[i - 1].t > 5000) j = i; /* a gap: a new run of readings */
      while (j < i && history[j].t < h.t - RATE_WINDOW_MS) j++;
      if (j === i) { h.thr = null; continue; } /* the first reading of a run: no rate yet */
      var a = history[j];
      h.thr = Math.max(0, h.p - a.p) / ((h.t - a.t) / 1000);
    }
  }

  function throughput() {
    var h = history[history.length - 1];
    return h && h.thr !== null && h.thr !== undefined ? h.thr : 0;
  }

  /* ---- charts ----------------------------------------------------------------------------- */
  function niceScale(v) {
    if (!(v > 0)) return { max: 4, step: 1 };
    var raw = v / 4;
    var mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var n = raw / mag;
    var step = (n <= 1 ? 1 : n <= 2 ? 2 : n <= 2.5 ? 2.5 : n <= 5 ? 5 : 10) * mag;
    if (step < 1 && v >= 1) step = 1;
    return { max: Math.ceil(v / step) * step, step: step };
  }

  /* The time range shown: five minutes, or less while the history is shorter (whole minutes, at
   * least one), so that a system that just started does not look like a spike at the right edge. */
  function chartWindow(t1) {
    if (!history.length) return 60000;
    var span = t1 - history[0].t;
    return Math.min(WINDOW_MS, Math.max(60000, Math.ceil(span / 60000) * 60000));
  }

  function drawChart(canvas, series, t1, win) {
    var dpr = window.devicePixelRatio || 1;
    var w = canvas.clientWidth, h = canvas.clientHeight;
    if (!w || !h) return;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    var ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    var L = 50, R = 12, T = 8, B = 22;
    var pw = w - L - R, ph = h - T - B;
    var t0 = t1 - win;
    var ymax = 0, any = false;
    series.forEach(function (s) {
      history.forEach(function (p) {
        var v = p[s.key];
        if (p.t >= t0 && v !== null && v !== undefined) { any = true; if (v > ymax) ymax = v; }
      });
    });
    var sc = niceScale(ymax);
    function X(t) { return L + (t - t0) / win * pw; }
    function Y(v) { return T + ph - v / sc.max * ph; }
    var tick = [10000, 15000, 20000, 30000, 60000].filter(function (st) { return win / st <= 6; })[0];

    ctx.font = '11px system-ui, "DejaVu Sans", sans-serif';
    ctx.lineWidth = 1;
    ctx.textBaseline = 'middle';
    ctx.textAlign = 'right';
    for (var v = 0; v <= sc.max + sc.step / 1000; v += sc.step) {
      var y = Math.round(Y(v)) + 0.5;
      ctx.strokeStyle = COLORS.grid;
      ctx.beginPath(); ctx.moveTo(L, y); ctx.lineTo(L + pw, y); ctx.stroke();
      ctx.fillStyle = COLORS.axis;
      ctx.fillText(fmtCompact(v), L - 8, y);
    }
    ctx.textBaseline = 'top';
    ctx.textAlign = 'center';
    var nticks = Math.round(win / tick);
    for (var k = 0; k <= nticks; k++) {
      var x = Math.round(X(t1 - k * tick)) + 0.5;
      ctx.strokeStyle = COLORS.grid;
      ctx.beginPath(); ctx.moveTo(x, T + ph); ctx.lineTo(x, T + ph + 4); ctx.stroke();
      ctx.fillStyle = COLORS.axis;
      ctx.textAlign = k === 0 ? 'right' : k === nticks ? 'left' : 'center';
      ctx.fillText(k === 0 ? 'now' : '\u2212' + (tick < 60000 ? k * tick / 1000 + ' s' : k * tick / 60000 +
        ' min'), x, T + ph + 7);
    }
    if (!any) {
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.fillStyle = COLORS.axis;
      ctx.fillText('waiting for data\u2026', L + pw / 2, T + ph / 2);
      return;
    }
    ctx.save();
    ctx.beginPath(); ctx.rect(L, T, pw, ph + 1); ctx.clip();
    series.forEach(function (s) {
      /* runs of points without a gap longer than 5 s (ops or Redis away) */
      var runs = [], run = [];
      history.forEach(function (p) {
        var val = p[s.key];
        if (val === null || val === undefined || p.t < t0 - 2000) { if (run.length) runs.push(run); run = []; return; }
        if (run.length && p.t - run[run.length - 1][0] > 5000) { runs.push(run); run = []; }
        run.push([p.t, val]);
      });
      if (run.length) runs.push(run);
      runs.forEach(function (r) {
        var grad = ctx.createLinearGradient(0, T, 0, T + ph);
        grad.addColorStop(0, s.color + '55');
        grad.addColorStop(1, s.color + '00');
        ctx.beginPath();
        ctx.moveTo(X(r[0][0]), Y(0));
        r.forEach(function (p) { ctx.lineTo(X(p[0]), Y(p[1])); });
        ctx.lineTo(X(r[r.length - 1][0]), Y(0));
        ctx.closePath();
        ctx.fillStyle = grad;
        ctx.fill();
        ctx.beginPath();
        r.forEach(function (p, i) { if (i) ctx.lineTo(X(p[0]), Y(p[1])); else ctx.moveTo(X(p[0]), Y(p[1])); });
        ctx.strokeStyle = s.color;
        ctx.lineWidth = 2;
        ctx.lineJoin = 'round';
        ctx.stroke();
        if (r.length === 1) {
          ctx.fillStyle = s.color;
          ctx.beginPath(); ctx.arc(X(r[0][0]), Y(r[0][1]), 2.5, 0, 2 * Math.PI); ctx.fill();
        }
      });
    });
    ctx.restore();
  }

  function drawCharts() {
    if (!latest) return;
    computeThroughput();
    var t1 = latest.taken_ms || (history.length ? history[history.length - 1].t : 0);
    var win = chartWindow(t1);
    var words = 'last ' + (win / 60000) + ' min';
    $('depth-window').textContent = 'lag + pending, ' + words;
    $('thr-window').textContent = 'tasks/s processed by the labs, ' + words;
    drawChart($('chart-depth'), [
      { key: 'analysis', color: COLORS.analysis },
      { key: 'reports', color: COLORS.reports }
    ], t1, win);
    drawChart($('chart-throughput'), [{ key: 'thr', color: COLORS.thr }], t1, win);
  }

  /* ---- panels ----------------------------------------------------------------------------- */
  function renderQueues(snap) {
    var qs = snap.queues, dead = 0;
    QUEUES.forEach(function (name) {
      var q = qs ? qs[name] : null;
      ['length', 'lag', 'pending', 'dead', 'consumers', 'groups'].forEach(function (f) {
        setFig($('q-' + name + '-' + f), q ? q[f] : null);
      });
      $('q-' + name + '-dead').classList.toggle('dead-nonzero', !!(q && q.dead > 0));
      setFig($('kpi-' + name + '-depth'), q ? depth(q) : null);
      if (q) dead += q.dead;
    });
    setFig($('dead-total'), qs ? dead : null);
    $('dead-total').style.color = dead > 0 ? 'var(--red)' : '';
    $('dead-summary').textContent = qs ? 'analysis ' + fmtInt(qs.analysis.dead) + ' \u00b7 reports ' +
      fmtInt(qs.reports.dead) : 'unknown';
  }

  function renderSemaphore(snap) {
    var s = snap.semaphore;
    var badge = $('sem-level');
    badge.dataset.level = s ? s.level : 'none';
    badge.textContent = s ? s.level : 'none';
    $('sem-summary').textContent = s ? 'backlog ' + fmtInt(s.backlog) + ' \u00b7 labs ' + fmtInt(s.labs)
      : 'no semaphore published';
    setFig($('sem-backlog'), s ? s.backlog : null, s ? fmtInt(s.backlog) + ' tasks' : '\u2014');
    setFig($('sem-labs'), s ? s.labs : null);
    var bar = $('sem-membar');
    if (s) {
      var pct = s.maxmemory ? Math.min(100, s.used_memory / s.maxmemory * 100) : 0;
      $('sem-memory').textContent = fmtBytes(s.used_memory) + ' used \u00b7 ' +
        (s.maxmemory ? fmtBytes(s.maxmemory) + ' max (' + pct.toFixed(0) + '%)' : 'no maxmemory');
      bar.style.width = (s.maxmemory ? pct : 0) + '%';
      bar.parentNode.style.display = s.maxmemory ? '' : 'none';
      bar.style.background = s.level === 'red' ? 'var(--red)' : s.level === 'yellow' ? 'var(--yellow)'
        : 'var(--blue)';
      $('sem-reason').textContent = s.reason || '\u2014';
      $('sem-reason').title = s.reason || '';
      $('sem-age').textContent = 'published ' + fmtAge(s.age_s) + ' ago';
    } else {
      $('sem-memory').textContent = '\u2014';
      bar.style.width = '0';
      bar.parentNode.style.display = 'none';
      $('sem-reason').textContent = 'none published (no active cgalpha-ops run)';
      $('sem-age').textContent = '';
    }
  }

  function renderLabs(snap) {
    var labs = snap.labs || [], body = $('labs-body'), stalled = 0, processed = 0;
    var rows = document.createDocumentFragment();
    labs.forEach(function (lab) {
      var tr = el('tr');
      tr.dataset.labId = lab.id;
      tr.dataset.stalled = lab.stalled ? '1' : '0';
      var r = rates.has(lab.id) ? rates.get(lab.id) : null;
      var cells = [
        ['id', lab.id], ['host', lab.host], ['plugins', lab.plugins],
        ['n processed', fmtInt(lab.processed), lab.processed],
        ['n rate', fmtRate(r), r === null ? '' : r.toFixed(3)],
        ['n failed', fmtInt(lab.failed), lab.failed],
        ['n inflight', fmtInt(lab.inflight), lab.inflight],
        ['n age', fmtAge(lab.age_s), lab.age_s]
      ];
      cells.forEach(function (c) {
        var td = el('td', c[0], c[1]);
        if (c.length > 2) td.dataset.value = String(c[2]);
        if (c[0] === 'plugins') td.title = lab.plugins;
        if (c[0] === 'n rate' && r === null) td.title = 'measuring: two heartbeats are needed';
        if (c[0] === 'n failed' && lab.failed > 0) td.classList.add('dead-nonzero');
        tr.appendChild(td);
      });
      var st = el('td');
      st.appendChild(el('span', 'state ' + (lab.stalled ? 'stalled' : 'ok'), lab.stalled ? 'STALLED' : 'ok'));
      tr.appendChild(st);
      rows.appendChild(tr);
      if (lab.stalled) stalled++;
      processed += lab.processed;
    });
    body.textContent = '';
    if (!labs.length) {
      var tr = el('tr', 'empty');
      var td = el('td', '', 'no lab heartbeat');
      td.colSpan = 9;
      tr.appendChild(td);
      body.appendChild(tr);
    } else {
      body.appendChild(rows);
    }
    setFig($('labs-alive'), labs.length);
    setFig($('labs-stalled'), stalled);
    setFig($('processed-total'), processed);
    /* The labs' own rates when all are known (the table's figures add up to it); before that, the
     * chart's latest point. */
    var thr = 0, known = labs.length > 0;
    labs.forEach(function (lab) {
      var r = rates.has(lab.id) ? rates.get(lab.id) : null;
      if (r === null) known = false; else thr += r;
    });
    if (!known) thr = throughput();
    setFig($('throughput'), thr.toFixed(3), fmtRate(thr));
  }

  function renderLegend() {
    var leg = $('regime-legend');
    if (leg.childNodes.length) return;
    ['bull', 'bear', 'sideways', 'turbulent', 'unknown'].forEach(function (r) {
      var sw = el('i', 'sw');
      sw.style.background = REGIME_COLORS[r];
      leg.appendChild(sw);
      leg.appendChild(document.createTextNode(r));
    });
  }

  function renderTimeline(snap) {
    var box = $('timeline');
    var bySym = new Map();
    function add(c) {
      var list = bySym.get(c.symbol);
      if (!list) { list = []; bySym.set(c.symbol, list); }
      if (!list.some(function (x) { return x.seq === c.seq; })) list.push(c);
    }
    var regimes = snap.regimes || [];
    regimes.forEach(function (r) { if (!bySym.has(r.symbol)) bySym.set(r.symbol, []); });
    (snap.changes || []).forEach(add);
    regimes.forEach(add);
    var current = new Map();
    regimes.forEach(function (r) { current.set(r.symbol, r); });
    var symbols = Array.from(bySym.keys()).sort(function (a, b) {
      return a.localeCompare(b, 'en', { numeric: true }); /* SYN2 before SYN10 */
    });
    box.dataset.symbols = String(symbols.length);
    box.textContent = '';
    if (!symbols.length) {
      box.appendChild(el('div', 'empty', 'no regime yet (nexus publishes one per symbol once it decides)'));
      return;
    }
    var shown = symbols.slice(0, MAX_LANES);
    var t0 = Infinity, t1 = -Infinity;
    shown.forEach(function (s) {
      var list = bySym.get(s);
      list.sort(function (a, b) { return a.ws - b.ws || a.seq - b.seq; });
      list.forEach(function (c) { if (c.ws < t0) t0 = c.ws; if (c.ws > t1) t1 = c.ws; });
    });
    if (!(t1 > t0)) { t0 = t1 - 3600000; }
    var end = t1 + Math.max((t1 - t0) * 0.04, 60000);
    var W = Math.max(box.clientWidth, 400), LABEL = 200, R = 12, LANE = 18, GAP = 7, AXIS = 22;
    var H = shown.length * (LANE + GAP) + AXIS + (symbols.length > shown.length ? 18 : 0);
    var root = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, width: W, height: H, role: 'img' });
    var pw = W - LABEL - R;
    function X(t) { return LABEL + (t - t0) / (end - t0) * pw; }
    shown.forEach(function (sym, i) {
      var y = i * (LANE + GAP);
      var cur = current.get(sym);
      var list = bySym.get(sym);
      var now = cur ? cur.regime : (list.length ? list[list.length - 1].regime : 'unknown');
      var g = svg('g', { 'class': 'lane', 'data-symbol': sym, 'data-regime': now,
        'data-changes': String(list.length) });
      g.appendChild(svg('text', { x: 0, y: y + LANE / 2 + 4, 'class': 'lane-label' }, sym));
      var col = REGIME_COLORS[now] || REGIME_COLORS.unknown;
      g.appendChild(svg('rect', { x: 96, y: y + 1, width: 84, height: LANE - 2, rx: 4,
        fill: col, 'fill-opacity': 0.16, stroke: col, 'stroke-opacity': 0.6 }));
      g.appendChild(svg('text', { x: 138, y: y + LANE / 2 + 4, 'text-anchor': 'middle',
        'class': 'lane-now regime-now', fill: col, 'data-symbol': sym, 'data-regime': now }, now));
      g.appendChild(svg('rect', { x: LABEL, y: y, width: pw, height: LANE, rx: 3, 'class': 'lane-bg' }));
      list.forEach(function (c, k) {
        var a = X(c.ws), b = X(k + 1 < list.length ? list[k + 1].ws : end);
        var seg = svg('rect', { x: a.toFixed(1), y: y, width: Math.max(1, b - a).toFixed(1),
          height: LANE, fill: REGIME_COLORS[c.regime] || REGIME_COLORS.unknown, 'fill-opacity': 0.85,
          'data-regime': c.regime });
        seg.appendChild(svg('title', {}, sym + ': ' + c.regime + ' from ' + fmtUtc(c.ws, true) +
          ' UTC (was ' + c.from + ', seq ' + c.seq + ', confidence ' + c.confidence.toFixed(2) + ')'));
        g.appendChild(seg);
      });
      root.appendChild(g);
    });
    var ay = shown.length * (LANE + GAP);
    root.appendChild(svg('line', { x1: LABEL, x2: LABEL + pw, y1: ay + 0.5, y2: ay + 0.5, 'class': 'axis-line' }));
    var spanDays = (end - t0) > 36 * 3600000;
    for (var k = 0; k <= 6; k++) {
      var t = t0 + (end - t0) * k / 6, x = X(t);
      root.appendChild(svg('line', { x1: x, x2: x, y1: ay, y2: ay + 4, 'class': 'axis-line' }));
      root.appendChild(svg('text', { x: x, y: ay + 16, 'class': 'axis',
        'text-anchor': k === 0 ? 'start' : k === 6 ? 'end' : 'middle' },
        fmtUtc(t, k === 0 || spanDays)));
    }
    if (symbols.length > shown.length) {
      root.appendChild(svg('text', { x: 0, y: H - 4, 'class': 'axis' },
        'and ' + fmtInt(symbols.length - shown.length) + ' more symbols'));
    }
    box.appendChild(root);
  }

  function renderHeader(snap, offline) {
    var conn = $('conn');
    if (offline) {
      conn.dataset.state = 'offline';
      document.body.dataset.stale = '1';
      conn.textContent = 'ops unreachable';
      conn.title = offline;
      return;
    }
    $('ns').textContent = snap.namespace;
    document.title = 'cgalpha ops \u00b7 ' + snap.namespace;
    conn.dataset.state = snap.stale ? 'stale' : 'live';
    document.body.dataset.stale = snap.stale ? '1' : '0';
    conn.textContent = snap.stale ? 'stale: ' + (snap.error || 'no reading') : 'live';
    conn.title = snap.redis && snap.redis.connected ? 'Redis connected' : 'Redis not connected';
    var up = $('updated');
    up.dataset.takenMs = String(snap.taken_ms);
    up.textContent = snap.taken_ms ? 'reading of ' + fmtClock(snap.taken_ms) : 'no reading yet';
    $('version').textContent = 'cgalpha ' + snap.version;
  }

  function update(snap) {
    latest = snap;
    renderHeader(snap, null);
    if (snap.taken_ms && snap.taken_ms !== lastTaken) { /* a new reading: rates and history */
      lastTaken = snap.taken_ms;
      snapshots++;
      updateRates(snap);
      record(snap);
      computeThroughput();
    }
    renderQueues(snap);
    renderSemaphore(snap);
    renderLabs(snap);
    renderLegend();
    renderTimeline(snap);
    drawCharts();
    document.body.dataset.snapshots = String(snapshots);
    document.body.dataset.ready = '1';
  }

  /* A page that opens gets the last five minutes from ops (again after ops was unreachable). */
  var seeded = false;
  function seed() {
    return fetch('api/history', { cache: 'no-store' })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (h) {
        if (!h || !h.points) return;
        h.points.forEach(function (p) {
          addPoint({ t: p[0], analysis: p[1], reports: p[2], p: p[3] });
        });
        computeThroughput();
        seeded = true;
      })
      .catch(function () { /* the live readings fill the charts anyway */ });
  }

  function poll() {
    fetch('api/snapshot', { cache: 'no-store' })
      .then(function (r) {
        if (!r.ok) throw new Error('HTTP ' + r.status);
        return r.json();
      })
      .then(function (snap) {
        if (!seeded) return seed().then(function () { update(snap); });
        update(snap);
      })
      .catch(function (e) {
        seeded = false;
        renderHeader(null, String(e && e.message ? e.message : e));
      })
      .then(function () {
        polls++;
        document.body.dataset.polls = String(polls);
        setTimeout(poll, POLL_MS);
      });
  }

  var resizeTimer = 0;
  window.addEventListener('resize', function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () { if (latest) { renderTimeline(latest); drawCharts(); } }, 100);
  });

  poll();
})();
