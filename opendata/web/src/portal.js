/* The open-data portal's own script: search on the home page, the chart and the map on a dataset
 * page. Libraries (MiniSearch, ECharts, Leaflet) are vendored next to it by `lake portal build`;
 * the data comes from JSON embedded in the page, so the site also works opened from the disk. */
(function () {
  'use strict';

  function readJSON(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  var CJK = /[\u3400-\u9fff\uf900-\ufaff]/;
  var RUNS = /[\u3400-\u9fff\uf900-\ufaff]+|[A-Za-z0-9_.\-]+/g;

  // Chinese has no spaces: a document is indexed by its characters and character pairs; other
  // text by lower-case words (and their parts between _ . -).
  function tokenizeDocument(text) {
    var out = [], m;
    RUNS.lastIndex = 0;
    while ((m = RUNS.exec(text || '')) !== null) {
      var s = m[0];
      if (CJK.test(s)) {
        for (var i = 0; i < s.length; i++) {
          out.push(s[i]);
          if (i + 1 < s.length) out.push(s.substr(i, 2));
        }
      } else {
        var w = s.toLowerCase();
        out.push(w);
        w.split(/[_.\-]+/).forEach(function (p) { if (p && p !== w) out.push(p); });
      }
    }
    return out;
  }

  // A query matches when every character pair of its Chinese runs (or its single character) and
  // every word is found: a Chinese run behaves like a substring search.
  function tokenizeQuery(text) {
    var out = [], m;
    RUNS.lastIndex = 0;
    while ((m = RUNS.exec(text || '')) !== null) {
      var s = m[0];
      if (CJK.test(s)) {
        if (s.length === 1) out.push(s);
        for (var i = 0; i + 1 < s.length; i++) out.push(s.substr(i, 2));
      } else {
        out.push(s.toLowerCase());
      }
    }
    return out;
  }

  function setupSearch() {
    var input = document.getElementById('q');
    var docs = readJSON('search-index');
    if (!input || !docs) return;
    var mini = new MiniSearch({
      fields: ['title', 'description', 'keywords', 'columns'],
      storeFields: ['id'],
      tokenize: tokenizeDocument,
      searchOptions: {
        tokenize: tokenizeQuery,
        combineWith: 'AND',
        boost: { title: 3, keywords: 2 },
        prefix: function (term) { return !CJK.test(term) && term.length > 1; },
        fuzzy: function (term) { return !CJK.test(term) && term.length > 4 ? 0.2 : false; }
      }
    });
    mini.addAll(docs);
    var list = document.getElementById('dataset-list');
    var cards = {};
    Array.prototype.forEach.call(list.querySelectorAll('.card'), function (c) { cards[c.dataset.id] = c; });
    var order = Object.keys(cards);
    var status = document.getElementById('search-status');
    var none = document.getElementById('no-results');

    function run() {
      var q = input.value.trim();
      var ids = q ? mini.search(q).map(function (r) { return r.id; }) : order;
      var shown = {};
      ids.forEach(function (id) { shown[id] = true; list.appendChild(cards[id]); });
      order.forEach(function (id) { cards[id].hidden = !shown[id]; });
      status.textContent = q ? ('找到 ' + ids.length + ' 个数据集') : ('共 ' + order.length + ' 个数据集');
      none.hidden = ids.length > 0;
      list.dataset.results = ids.join(',');
    }
    input.addEventListener('input', run);
    var fromUrl = new URLSearchParams(window.location.search).get('q');
    if (fromUrl) { input.value = fromUrl; }
    run();
  }

  function setupChart() {
    var el = document.getElementById('chart');
    var spec = readJSON('chart-data');
    if (!el || !spec || typeof echarts === 'undefined') return;
    var chart = echarts.init(el, null, { renderer: 'svg' });
    var rotate = spec.categories.length > 8 ? 40 : 0;
    chart.setOption({
      animation: false,
      aria: { enabled: true },
      tooltip: { trigger: 'axis' },
      grid: { left: 8, right: 16, top: 32, bottom: 8, containLabel: true },
      xAxis: { type: 'category', name: spec.x_title, data: spec.categories, axisLabel: { rotate: rotate, interval: 0 } },
      yAxis: { type: 'value', name: spec.y_title },
      series: [{ type: spec.type, name: spec.y_title, data: spec.values, itemStyle: { color: '#1565c0' } }]
    });
    window.addEventListener('resize', function () { chart.resize(); });
    el.dataset.rendered = 'true';
  }

  function setupMap() {
    var el = document.getElementById('map');
    var geo = readJSON('map-data');
    if (!el || !geo || typeof L === 'undefined') return;
    // rows that share a geometry (a town on several days) are drawn once, with their row count
    var groups = {}, keys = [];
    geo.data.features.forEach(function (f) {
      if (!f.geometry) return;
      var k = JSON.stringify(f.geometry);
      if (!groups[k]) { groups[k] = { type: 'Feature', geometry: f.geometry, properties: { label: f.properties[geo.label] || '', rows: 0 } }; keys.push(k); }
      groups[k].properties.rows += 1;
    });
    var features = keys.map(function (k) { return groups[k]; });
    var map = L.map(el, { zoomSnap: 0.25, scrollWheelZoom: false });
    map.attributionControl.setPrefix(false);
    var layer = L.geoJSON({ type: 'FeatureCollection', features: features }, {
      style: function () { return { color: '#0d47a1', weight: 1, fillColor: '#42a5f5', fillOpacity: 0.35 }; },
      pointToLayer: function (f, latlng) {
        return L.circleMarker(latlng, { radius: 6, color: '#b71c1c', weight: 1, fillColor: '#ef5350', fillOpacity: 0.8 });
      },
      onEachFeature: function (f, l) {
        var div = document.createElement('div');
        div.textContent = (f.properties.label ? f.properties.label + '：' : '') + f.properties.rows + ' 条记录';
        l.bindTooltip(div);
      },
      attribution: geo.attribution
    }).addTo(map);
    if (features.length) map.fitBounds(layer.getBounds(), { padding: [12, 12] });
    el.dataset.features = String(features.length);
    el.dataset.rendered = 'true';
  }

  setupSearch();
  setupChart();
  setupMap();
})();
