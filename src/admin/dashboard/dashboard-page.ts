/**
 * The dashboard's page: static HTML and a script that listens to `/api/events` (server-sent
 * events; a token in the page's URL is passed on) and redraws. Values are inserted with
 * `textContent`, never as HTML. Charts are uPlot's (served by the dashboard from node_modules):
 * statements per second per shard, replica lag, cache hit ratio per tier, over the last minutes.
 */
export const DASHBOARD_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>kysely-scale dashboard</title>
<link rel="stylesheet" href="uplot.css">
<style>
  body { font: 14px system-ui, sans-serif; margin: 16px 24px; color: #222; background: #fafafa; }
  h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 20px 0 8px; }
  .muted { color: #777; } .bad { color: #b00020; font-weight: 600; } .ok { color: #1b7f3b; font-weight: 600; }
  table { border-collapse: collapse; background: #fff; } td, th { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
  #slot-map { display: flex; height: 28px; border: 1px solid #999; background: #fff; }
  #slot-map div { height: 100%; } .legend span { display: inline-block; margin-right: 12px; }
  .swatch { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
  .bar { width: 200px; height: 10px; background: #eee; display: inline-block; } .bar div { height: 100%; background: #3b6fd8; }
  .charts { display: flex; flex-wrap: wrap; gap: 16px; } .chart { background: #fff; border: 1px solid #ddd; padding: 4px; }
  #problems li { color: #b00020; }
</style>
</head>
<body>
<h1>kysely-scale</h1>
<div class="muted"><span id="catalog"></span> · topology version <span id="version">?</span> · checked <span id="checked">never</span> · <span id="connection">connecting…</span></div>
<ul id="problems"></ul>
<h2>Slot map</h2>
<div id="slot-map"></div>
<div class="legend" id="slot-legend"></div>
<h2>Shards and servers</h2>
<table id="shards"><thead><tr><th>shard</th><th>slots</th><th>rows (est.)</th><th>statements/s</th><th>server</th><th>role</th><th>health</th><th>lag</th></tr></thead><tbody></tbody></table>
<h2>Moves in progress</h2>
<div id="moves" class="muted">none</div>
<h2>Cache hit ratio</h2>
<table id="cache"><thead><tr><th>policy</th><th>L1</th><th>L2</th></tr></thead><tbody></tbody></table>
<h2>Balancer instances</h2>
<table id="balancer"><thead><tr><th>instance</th><th>address</th><th>state</th><th>in flight</th><th>calls</th><th>share</th><th>p50 ms</th></tr></thead><tbody></tbody></table>
<h2>Over time</h2>
<div class="charts"><div class="chart" id="chart-traffic"></div><div class="chart" id="chart-lag"></div><div class="chart" id="chart-cache"></div></div>
<script src="uplot.js"></script>
<script>
(function () {
  var COLORS = ['#3b6fd8', '#e8833a', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#17becf'];
  var token = new URLSearchParams(location.search).get('token');
  var suffix = token ? '?token=' + encodeURIComponent(token) : '';
  var previous = null;
  var series = { time: [], traffic: {}, lag: {}, cache: {} };
  var charts = {};
  var KEEP = 300;
  function el(tag, text, cls) { var e = document.createElement(tag); if (text !== undefined) e.textContent = String(text); if (cls) e.className = cls; return e; }
  function row(cells) { var tr = document.createElement('tr'); cells.forEach(function (c) { var td = document.createElement('td'); if (c instanceof Node) td.appendChild(c); else td.textContent = c === null || c === undefined ? '' : String(c); tr.appendChild(td); }); return tr; }
  function colorOf(i) { return COLORS[i % COLORS.length]; }
  function ranges(text) { if (!text) return []; return text.split(',').map(function (r) { var p = r.split('-').map(Number); return [p[0], p.length > 1 ? p[1] : p[0]]; }); }
  function rates(s) {
    // statements per shard per second, from running totals of every instance
    var totals = {};
    s.instances.forEach(function (i) { i.statements.forEach(function (x) { totals[x.shardId] = (totals[x.shardId] || 0) + x.count; }); });
    var out = {};
    if (previous) { var dt = (Date.parse(s.status.checkedAt) - Date.parse(previous.at)) / 1000; Object.keys(totals).forEach(function (k) { out[k] = dt > 0 ? Math.max(0, (totals[k] - (previous.totals[k] || 0)) / dt) : 0; }); }
    previous = { at: s.status.checkedAt, totals: totals };
    return out;
  }
  function cacheRatios(s) {
    var byPolicy = {};
    s.instances.forEach(function (i) { (i.cache || []).forEach(function (c) { var p = byPolicy[c.policy] = byPolicy[c.policy] || { l1: [0, 0], l2: [0, 0] }; p[c.tier][0] += c.hits; p[c.tier][1] += c.misses; }); });
    return byPolicy;
  }
  function ratio(pair) { var t = pair[0] + pair[1]; return t === 0 ? null : pair[0] / t; }
  function pct(x) { return x === null ? '–' : (x * 100).toFixed(1) + '%'; }
  function push(store, key, value) { if (!store[key]) store[key] = series.time.slice(0, -1).map(function () { return null; }); store[key].push(value); if (store[key].length > KEEP) store[key].shift(); }
  function chart(id, title, store, yLabel) {
    var keys = Object.keys(store).sort();
    var target = document.getElementById(id);
    var signature = keys.join('|');
    var data = [series.time].concat(keys.map(function (k) { return store[k]; }));
    if (!charts[id] || charts[id].signature !== signature) {
      if (charts[id]) charts[id].plot.destroy();
      var opts = { title: title, width: 420, height: 200, scales: { x: { time: true } }, axes: [{}, { label: yLabel }],
        series: [{}].concat(keys.map(function (k, i) { return { label: k, stroke: colorOf(i), width: 2, spanGaps: true }; })) };
      charts[id] = { plot: new uPlot(opts, data, target), signature: signature };
    } else charts[id].plot.setData(data);
  }
  function render(s) {
    var st = s.status;
    document.getElementById('catalog').textContent = st.catalog;
    document.getElementById('version').textContent = st.version === null ? 'none' : st.version;
    document.getElementById('checked').textContent = new Date(st.checkedAt).toLocaleTimeString();
    var problems = document.getElementById('problems'); problems.textContent = '';
    st.problems.concat(s.instancesError ? ['instances: ' + s.instancesError] : []).forEach(function (p) { problems.appendChild(el('li', p)); });
    var map = document.getElementById('slot-map'); map.textContent = '';
    var legend = document.getElementById('slot-legend'); legend.textContent = '';
    var segments = [];
    st.shards.forEach(function (shard, i) { ranges(shard.slotRanges).forEach(function (r) { segments.push({ from: r[0], to: r[1], shard: shard.id, color: colorOf(i) }); }); });
    segments.sort(function (a, b) { return a.from - b.from; });
    segments.forEach(function (seg) { var d = el('div'); d.style.width = ((seg.to - seg.from + 1) / (st.slotCount || 1) * 100) + '%'; d.style.background = seg.color; d.title = seg.shard + ': slots ' + seg.from + '-' + seg.to; d.dataset.shard = seg.shard; d.dataset.slots = seg.from + '-' + seg.to; map.appendChild(d); });
    st.shards.forEach(function (shard, i) { var span = el('span'); var sw = el('span', '', 'swatch'); sw.style.background = colorOf(i); span.appendChild(sw); span.appendChild(document.createTextNode(shard.id + ' (' + shard.slots + ' slots)')); legend.appendChild(span); });
    var perShard = rates(s);
    var body = document.querySelector('#shards tbody'); body.textContent = '';
    st.shards.forEach(function (shard) {
      shard.servers.forEach(function (server, j) {
        var health = server.reachable ? el('span', server.roleMatches === false ? 'role mismatch' : 'up · ' + server.latencyMillis + ' ms', server.roleMatches === false ? 'bad' : 'ok') : el('span', 'unreachable: ' + (server.error || ''), 'bad');
        var lag = server.role === 'replica' && server.reachable ? (server.lagBytes === null ? '?' : server.lagBytes + ' B') + ' / ' + (server.lagSeconds === null ? '?' : server.lagSeconds.toFixed(1) + ' s') : '';
        var tr = j === 0 ? row([shard.id, shard.slots + ' (' + (shard.slotRanges || 'none') + ')', shard.rowEstimate === null ? '?' : shard.rowEstimate, perShard[shard.id] === undefined ? '–' : perShard[shard.id].toFixed(1), server.server, server.role, health, lag])
                         : row(['', '', '', '', server.server, server.role, health, lag]);
        tr.dataset.shard = shard.id; tr.dataset.role = server.role; tr.dataset.reachable = String(server.reachable);
        body.appendChild(tr);
      });
    });
    var moves = document.getElementById('moves'); moves.textContent = '';
    if (st.moves.length === 0) moves.textContent = 'none';
    st.moves.forEach(function (m) {
      var done = m.batches.filter(function (b) { return b.phase === 'cleaned'; }).length;
      var line = el('div', 'move ' + m.id + ' (' + m.kind + '): ' + done + '/' + m.batches.length + ' batches done ');
      var bar = el('span', '', 'bar'); var fill = el('div'); fill.style.width = (m.batches.length ? done / m.batches.length * 100 : 0) + '%'; bar.appendChild(fill); line.appendChild(bar);
      m.batches.forEach(function (b) { line.appendChild(el('div', b.source + ' → ' + b.target + ' slots ' + b.slots + ': ' + b.phase + ', ' + b.rowsCopied + ' rows copied', 'muted')); });
      moves.appendChild(line);
    });
    var ratios = cacheRatios(s);
    var cbody = document.querySelector('#cache tbody'); cbody.textContent = '';
    Object.keys(ratios).sort().forEach(function (p) { cbody.appendChild(row([p, pct(ratio(ratios[p].l1)), pct(ratio(ratios[p].l2))])); });
    if (Object.keys(ratios).length === 0) cbody.appendChild(row(['no instance publishes cache stats', '', '']));
    var bbody = document.querySelector('#balancer tbody'); bbody.textContent = '';
    var calls = {}; var total = 0;
    s.instances.forEach(function (i) { (i.balancer || []).forEach(function (b) { calls[b.id] = calls[b.id] || { b: b, n: 0 }; calls[b.id].n += b.totalRequests; total += b.totalRequests; }); });
    Object.keys(calls).sort().forEach(function (id) { var b = calls[id].b; var state = b.ejected ? el('span', 'ejected', 'bad') : b.healthy ? el('span', 'healthy', 'ok') : el('span', 'unhealthy', 'bad');
      bbody.appendChild(row([id, b.address, state, b.inflight, calls[id].n, total ? (calls[id].n / total * 100).toFixed(0) + '%' : '–', b.latencyP50Millis === null ? '–' : b.latencyP50Millis.toFixed(1)])); });
    if (total === 0 && Object.keys(calls).length === 0) bbody.appendChild(row(['no instance publishes balancer stats', '', '', '', '', '', '']));
    series.time.push(Date.parse(st.checkedAt) / 1000); if (series.time.length > KEEP) series.time.shift();
    st.shards.forEach(function (shard) { push(series.traffic, shard.id, perShard[shard.id] === undefined ? null : perShard[shard.id]);
      shard.servers.forEach(function (sv) { if (sv.role === 'replica') push(series.lag, shard.id + ' replica', sv.lagBytes); }); });
    Object.keys(ratios).forEach(function (p) { push(series.cache, p + ' L1', ratio(ratios[p].l1)); push(series.cache, p + ' L2', ratio(ratios[p].l2)); });
    [series.traffic, series.lag, series.cache].forEach(function (store) { Object.keys(store).forEach(function (k) { while (store[k].length < series.time.length) store[k].push(null); while (store[k].length > series.time.length) store[k].shift(); }); });
    chart('chart-traffic', 'statements/s per shard', series.traffic, 'stmt/s');
    chart('chart-lag', 'replica lag (WAL bytes)', series.lag, 'bytes');
    chart('chart-cache', 'cache hit ratio', series.cache, 'ratio');
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  }
  var source = new EventSource('api/events' + suffix);
  source.onopen = function () { document.getElementById('connection').textContent = 'live'; };
  source.onerror = function () { document.getElementById('connection').textContent = 'reconnecting…'; };
  source.onmessage = function (e) { try { render(JSON.parse(e.data)); } catch (err) { document.getElementById('connection').textContent = 'render error: ' + err.message; } };
})();
</script>
</body>
</html>
`;
