// shoal's web console: one page, no build step. Every byte of data comes from the
// Kubernetes API with the signed-in user's bearer token (LIST, then WATCH), so RBAC decides
// what the page may show; the only other call is shoal's "why" report, also made as the user.
'use strict';

const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const TOKEN_KEY = 'shoal.token';

// What tests and curious users can read: frame times, and when each cell last changed.
const stats = { draws: 0, totalDrawMs: 0, lastDrawMs: 0, maxDrawMs: 0, layouts: 0, maxLayoutMs: 0, paintedAt: {}, cellState: {} };
window.shoal = { stats };

// ---- the API ---------------------------------------------------------------------------

let token = sessionStorage.getItem(TOKEN_KEY) || '';

function headers(extra) {
  return Object.assign({ Authorization: 'Bearer ' + token }, extra || {});
}

async function apiError(resp) {
  let message = resp.status + ' ' + resp.statusText;
  try {
    const s = await resp.json();
    if (s && s.message) message = s.message;
  } catch (_) { /* not a Status */ }
  const e = new Error(message);
  e.status = resp.status;
  return e;
}

async function api(method, path, body, contentType, accept) {
  const h = headers(accept ? { Accept: accept } : {});
  if (body !== undefined) h['Content-Type'] = contentType || 'application/json';
  const resp = await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!resp.ok) throw await apiError(resp);
  return resp.json();
}

// A LIST followed by a WATCH from its resourceVersion, kept going: a dropped stream is
// resumed from the last version seen, a 410 Gone lists again. `reset(items)` gets each
// LIST, `event(type, object)` each change; a 401/403 goes to `denied(error)` and stops.
class Watch {
  constructor(path, handlers) {
    this.path = path;
    this.h = handlers;
    this.stopped = false;
    this.ctl = null;
  }

  start() {
    this.loop();
    return this;
  }

  stop() {
    this.stopped = true;
    if (this.ctl) this.ctl.abort();
  }

  async loop() {
    let rv = null;
    while (!this.stopped) {
      try {
        this.ctl = new AbortController();
        if (rv === null) {
          const resp = await fetch(this.path, { headers: headers(), signal: this.ctl.signal });
          if (!resp.ok) throw await apiError(resp);
          const list = await resp.json();
          if (this.stopped) return;
          rv = list.metadata.resourceVersion;
          this.h.reset(list.items || []);
        }
        const sep = this.path.includes('?') ? '&' : '?';
        const url = this.path + sep + 'watch=1&allowWatchBookmarks=true&resourceVersion=' + encodeURIComponent(rv);
        const resp = await fetch(url, { headers: headers(), signal: this.ctl.signal });
        if (!resp.ok) throw await apiError(resp);
        const reader = resp.body.getReader();
        const decoder = new TextDecoder();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += decoder.decode(value, { stream: true });
          const lines = buf.split('\n');
          buf = lines.pop();
          for (const line of lines) {
            if (!line.trim()) continue;
            const ev = JSON.parse(line);
            if (ev.type === 'ERROR') {
              const e = new Error((ev.object && ev.object.message) || 'watch error');
              e.status = ev.object && ev.object.code;
              throw e;
            }
            const meta = ev.object && ev.object.metadata;
            if (meta && meta.resourceVersion) rv = meta.resourceVersion;
            if (ev.type !== 'BOOKMARK') this.h.event(ev.type, ev.object);
          }
        }
      } catch (e) {
        if (this.stopped) return;
        if (e.status === 401 || e.status === 403) {
          if (this.h.denied) this.h.denied(e);
          return;
        }
        if (e.status === 410) rv = null;
        await sleep(1000);
      }
    }
  }
}

function banner(text) {
  const b = $('banner');
  b.textContent = text || '';
  b.hidden = !text;
}

// ---- signing in ------------------------------------------------------------------------

// A pasted kubeconfig gives its user's token; anything else is taken as the token itself.
function tokenOf(text) {
  text = text.trim();
  if (/apiVersion:|clusters:|users:/.test(text)) {
    const m = text.match(/^\s*token:\s*["']?([^"'\s]+)/m);
    if (m) return { token: m[1] };
    if (/client-certificate/.test(text)) {
      return { error: 'This kubeconfig signs in with a client certificate, which a page cannot present: use a token (kubectl create token NAME).' };
    }
    return { error: 'This kubeconfig holds no token.' };
  }
  if (!text || /\s/.test(text)) return { error: 'Paste a bearer token or a kubeconfig.' };
  return { token: text };
}

async function whoami() {
  const review = await api('POST', '/apis/authentication.k8s.io/v1/selfsubjectreviews', {
    apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview',
  });
  return (review.status && review.status.userInfo && review.status.userInfo.username) || '?';
}

async function signIn(candidate) {
  token = candidate;
  try {
    const user = await whoami();
    sessionStorage.setItem(TOKEN_KEY, token);
    $('whoami').textContent = user;
    $('signin').hidden = true;
    $('app').hidden = false;
    $('tabs').hidden = false;
    $('signout').hidden = false;
    startApp();
  } catch (e) {
    token = '';
    sessionStorage.removeItem(TOKEN_KEY);
    const err = $('signin-error');
    err.textContent = e.status === 401 ? 'The server did not accept this token (401 Unauthorized).' : e.message;
    err.hidden = false;
  }
}

$('signin-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const t = tokenOf($('credential').value);
  if (t.error) {
    $('signin-error').textContent = t.error;
    $('signin-error').hidden = false;
    return;
  }
  signIn(t.token);
});

$('signout').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  location.reload();
});

// ---- tabs ------------------------------------------------------------------------------

let activeTab = 'map';
document.querySelectorAll('#tabs button').forEach((b) => b.addEventListener('click', () => showTab(b.dataset.tab)));

function showTab(tab) {
  activeTab = tab;
  document.querySelectorAll('#tabs button').forEach((b) => b.classList.toggle('active', b.dataset.tab === tab));
  document.querySelectorAll('.tab').forEach((s) => { s.hidden = s.id !== 'tab-' + tab; });
  if (tab === 'map') scheduleDraw(true);
  if (tab === 'map' || tab === 'rollouts') renderDetail();
  if (tab === 'objects') loadObjects();
  if (tab === 'events') startEvents();
}
window.shoal.showTab = showTab;

// ---- cluster state ---------------------------------------------------------------------

const nodes = new Map(); // name -> compact node
const workloads = new Map(); // "kind/ns/name" -> object
let selected = ''; // the workload shown on the map and in the detail panel
let dsPods = new Map(); // pod name -> compact pod (of the selected DaemonSet)
let revisions = new Map(); // controller-revision-hash -> revision number
let currentHash = '';
let why = new Map(); // node -> { shouldRun, why, pod }
let selectedWatches = [];
let replicaSets = new Map(); // for a selected Deployment

function compactNode(n) {
  const conds = (n.status && n.status.conditions) || [];
  const ready = conds.find((c) => c.type === 'Ready');
  return {
    name: n.metadata.name,
    labels: n.metadata.labels || {},
    taints: (n.spec && n.spec.taints) || [],
    unschedulable: !!(n.spec && n.spec.unschedulable),
    ready: !!ready && ready.status === 'True',
  };
}

// The node a daemon pod is for: its nodeName, or before binding its affinity's field term.
function podNode(p) {
  if (p.spec && p.spec.nodeName) return p.spec.nodeName;
  const terms = (((p.spec || {}).affinity || {}).nodeAffinity || {}).requiredDuringSchedulingIgnoredDuringExecution;
  for (const t of (terms && terms.nodeSelectorTerms) || []) {
    for (const f of t.matchFields || []) {
      if (f.key === 'metadata.name' && f.values && f.values.length) return f.values[0];
    }
  }
  return '';
}

function isReady(obj) {
  return ((obj.status && obj.status.conditions) || []).some((c) => c.type === 'Ready' && c.status === 'True');
}

function compactPod(p) {
  return {
    name: p.metadata.name,
    node: podNode(p),
    ready: isReady(p),
    phase: (p.status && p.status.phase) || 'Pending',
    hash: (p.metadata.labels || {})['controller-revision-hash'] || '',
    deleting: !!p.metadata.deletionTimestamp,
    owner: ((p.metadata.ownerReferences || []).find((o) => o.controller) || {}).uid,
  };
}

function nodeChanged(a, b) {
  return !a || a.ready !== b.ready || a.unschedulable !== b.unschedulable
    || JSON.stringify(a.taints) !== JSON.stringify(b.taints) || JSON.stringify(a.labels) !== JSON.stringify(b.labels);
}

function selectorString(sel) {
  const parts = [];
  for (const [k, v] of Object.entries((sel && sel.matchLabels) || {})) parts.push(k + '=' + v);
  for (const e of (sel && sel.matchExpressions) || []) {
    const vals = (e.values || []).join(',');
    if (e.operator === 'In') parts.push(`${e.key} in (${vals})`);
    else if (e.operator === 'NotIn') parts.push(`${e.key} notin (${vals})`);
    else if (e.operator === 'Exists') parts.push(e.key);
    else if (e.operator === 'DoesNotExist') parts.push('!' + e.key);
  }
  return parts.join(',');
}

const KIND_PATHS = { DaemonSet: 'daemonsets', Deployment: 'deployments', StatefulSet: 'statefulsets' };

function workloadKey(kind, o) {
  return kind + '/' + o.metadata.namespace + '/' + o.metadata.name;
}

function workloadPath(w) {
  return `/apis/apps/v1/namespaces/${w.metadata.namespace}/${KIND_PATHS[w.kind]}/${w.metadata.name}`;
}

let appStarted = false;
function startApp() {
  if (appStarted) return;
  appStarted = true;
  new Watch('/api/v1/nodes', {
    reset(items) {
      nodes.clear();
      for (const n of items) nodes.set(n.metadata.name, compactNode(n));
      $('forbidden').hidden = true;
      $('map-wrap').hidden = false;
      nodesReshaped();
    },
    event(type, o) {
      const name = o.metadata.name;
      if (type === 'DELETED') {
        nodes.delete(name);
        nodesReshaped();
        return;
      }
      const c = compactNode(o);
      const before = nodes.get(name);
      nodes.set(name, c);
      if (!before) nodesReshaped();
      else if (nodeChanged(before, c)) {
        scheduleWhy();
        scheduleDraw(JSON.stringify(before.labels) !== JSON.stringify(c.labels));
      }
    },
    denied(e) {
      $('map-wrap').hidden = true;
      const f = $('forbidden');
      f.textContent = 'Forbidden: ' + e.message;
      f.hidden = false;
    },
  }).start();
  for (const kind of Object.keys(KIND_PATHS)) {
    new Watch('/apis/apps/v1/' + KIND_PATHS[kind], {
      reset(items) {
        for (const k of [...workloads.keys()]) if (k.startsWith(kind + '/')) workloads.delete(k);
        for (const o of items) workloads.set(workloadKey(kind, o), Object.assign(o, { kind }));
        workloadsChanged();
      },
      event(type, o) {
        const key = workloadKey(kind, o);
        if (type === 'DELETED') workloads.delete(key);
        else {
          const before = workloads.get(key);
          workloads.set(key, Object.assign(o, { kind }));
          if (key === selected && before && JSON.stringify(before.spec) !== JSON.stringify(o.spec)) scheduleWhy();
        }
        workloadsChanged();
      },
      denied(e) {
        rolloutDenied[kind] = e.message;
        workloadsChanged();
      },
    }).start();
  }
  window.addEventListener('resize', () => scheduleDraw(true));
  const wanted = new URLSearchParams(location.hash.slice(1)).get('select');
  if (wanted) selectWorkload(wanted);
}

const rolloutDenied = {};

function nodesReshaped() {
  refreshGroupChoices();
  scheduleWhy();
  scheduleDraw(true);
}

// ---- the selected workload -------------------------------------------------------------

function selectWorkload(key) {
  for (const w of selectedWatches) w.stop();
  selectedWatches = [];
  dsPods = new Map();
  revisions = new Map();
  currentHash = '';
  why = new Map();
  replicaSets = new Map();
  selected = key;
  $('ds-select').value = key.startsWith('DaemonSet/') ? key : '';
  $('node-panel').hidden = true;
  const w = workloads.get(key);
  if (!w) {
    // Chosen before the lists arrived (a link): try again when they do.
    pendingSelect = key;
    renderDetail();
    scheduleDraw(false);
    return;
  }
  pendingSelect = '';
  const ns = w.metadata.namespace;
  const sel = encodeURIComponent(selectorString(w.spec.selector));
  if (w.kind === 'DaemonSet' || w.kind === 'StatefulSet') {
    selectedWatches.push(new Watch(`/api/v1/namespaces/${ns}/pods?labelSelector=${sel}`, {
      reset(items) {
        dsPods = new Map();
        for (const p of items) {
          const c = compactPod(p);
          if (c.owner === w.metadata.uid) dsPods.set(c.name, c);
        }
        podsChanged();
      },
      event(type, p) {
        const c = compactPod(p);
        if (type === 'DELETED' || c.owner !== w.metadata.uid) dsPods.delete(c.name);
        else dsPods.set(c.name, c);
        podsChanged();
      },
    }).start());
    selectedWatches.push(new Watch(`/apis/apps/v1/namespaces/${ns}/controllerrevisions?labelSelector=${sel}`, {
      reset(items) {
        revisions = new Map();
        for (const r of items) addRevision(r, w);
        revisionsChanged();
      },
      event(type, r) {
        const hash = revisionHash(r);
        if (type === 'DELETED') revisions.delete(hash);
        else addRevision(r, w);
        revisionsChanged();
      },
    }).start());
  } else if (w.kind === 'Deployment') {
    selectedWatches.push(new Watch(`/apis/apps/v1/namespaces/${ns}/replicasets?labelSelector=${sel}`, {
      reset(items) {
        replicaSets = new Map();
        for (const r of items) if (ownedBy(r, w)) replicaSets.set(r.metadata.name, r);
        renderDetail();
      },
      event(type, r) {
        if (type === 'DELETED' || !ownedBy(r, w)) replicaSets.delete(r.metadata.name);
        else replicaSets.set(r.metadata.name, r);
        renderDetail();
      },
    }).start());
  }
  if (w.kind === 'DaemonSet') scheduleWhy();
  renderDetail();
  scheduleDraw(false);
}
let pendingSelect = '';
window.shoal.selectWorkload = selectWorkload;

function ownedBy(o, w) {
  return (o.metadata.ownerReferences || []).some((r) => r.controller && r.uid === w.metadata.uid);
}

function revisionHash(r) {
  return (r.metadata.labels || {})['controller-revision-hash'] || r.metadata.name.slice(r.metadata.name.lastIndexOf('-') + 1);
}

function addRevision(r, w) {
  if (ownedBy(r, w)) revisions.set(revisionHash(r), { number: r.revision, name: r.metadata.name, data: r.data });
}

function revisionsChanged() {
  let best = -1;
  currentHash = '';
  for (const [hash, r] of revisions) {
    if (r.number > best) {
      best = r.number;
      currentHash = hash;
    }
  }
  const w = workloads.get(selected);
  if (w && w.kind === 'StatefulSet' && w.status && w.status.updateRevision) {
    currentHash = revisionHash({ metadata: { name: w.status.updateRevision } });
  }
  podsChanged();
}

let podsPending = false;
function podsChanged() {
  scheduleDraw(false);
  if (!podsPending) {
    podsPending = true;
    setTimeout(() => { podsPending = false; renderDetail(); }, 100);
  }
}

// shoal's "why" report for every node, as the user (debounced: one request at a time).
let whyBusy = false;
let whyAgain = false;
function scheduleWhy() {
  if (!selected.startsWith('DaemonSet/')) return;
  if (whyBusy) {
    whyAgain = true;
    return;
  }
  whyBusy = true;
  setTimeout(async () => {
    const key = selected;
    const [, ns, name] = key.split('/');
    try {
      const report = await api('GET', `/shoal/v1/why/namespaces/${ns}/daemonsets/${name}`);
      if (key === selected) {
        why = new Map(report.rows.map((r) => [r.node, r]));
        scheduleDraw(false);
      }
    } catch (e) {
      if (e.status === 403) banner('Why: ' + e.message);
    }
    whyBusy = false;
    if (whyAgain) {
      whyAgain = false;
      scheduleWhy();
    }
  }, 300);
}

// ---- the map ---------------------------------------------------------------------------

const COLOURS = {
  ready: '#2da44e', notready: '#cf222e', cordoned: '#8c959f',
  new: '#2da44e', 'new-unready': '#e3b341', old: '#4c8ef7', 'old-unready': '#b6d0fb',
  missing: '#ffffff', norun: '#3b4252',
};
const TAINT = '#f0883e';
const LABELS = {
  ready: 'Ready', notready: 'NotReady', cordoned: 'Ready, cordoned',
  new: 'current revision, Ready', 'new-unready': 'current revision, not Ready', old: 'older revision, Ready',
  'old-unready': 'older revision, not Ready', missing: 'should run, no pod yet', norun: 'should not run here',
};

let podsByNode = null;
function indexPods() {
  podsByNode = new Map();
  for (const p of dsPods.values()) {
    if (p.deleting || !p.node) continue;
    const have = podsByNode.get(p.node);
    if (!have || (p.hash === currentHash && have.hash !== currentHash)) podsByNode.set(p.node, p);
  }
}

function cellState(n) {
  if (!selected.startsWith('DaemonSet/')) {
    if (!n.ready) return 'notready';
    return n.unschedulable ? 'cordoned' : 'ready';
  }
  const pod = podsByNode.get(n.name);
  if (pod) return (pod.hash === currentHash ? 'new' : 'old') + (pod.ready ? '' : '-unready');
  const w = why.get(n.name);
  if (w && !w.shouldRun) return 'norun';
  return 'missing';
}

let layoutCells = []; // { node, x, y }
let cellSize = 10;
let layoutDirty = true;
let drawQueued = false;

function scheduleDraw(relayout) {
  if (relayout) layoutDirty = true;
  if (drawQueued) return;
  drawQueued = true;
  requestAnimationFrame(() => {
    drawQueued = false;
    draw();
  });
}

function groupKey() {
  return $('group-select').value;
}

function refreshGroupChoices() {
  const counts = new Map();
  for (const n of nodes.values()) {
    for (const [k, v] of Object.entries(n.labels)) {
      if (!counts.has(k)) counts.set(k, new Set());
      counts.get(k).add(v);
    }
  }
  const sel = $('group-select');
  const current = sel.value;
  const keys = [...counts.keys()].filter((k) => counts.get(k).size <= 64).sort();
  const have = [...sel.options].map((o) => o.value).slice(1);
  if (JSON.stringify(have) !== JSON.stringify(keys)) {
    sel.length = 1;
    for (const k of keys) sel.add(new Option(k, k));
    sel.value = keys.includes(current) ? current : '';
  }
}

// node10 after node9: names compare with their numbers as numbers.
const NAMES = new Intl.Collator(undefined, { numeric: true });

function layout(width) {
  const key = groupKey();
  const groups = new Map();
  const sorted = [...nodes.values()].sort((a, b) => NAMES.compare(a.name, b.name));
  for (const n of sorted) {
    const g = key ? (n.labels[key] === undefined ? '\u0000none' : n.labels[key]) : '';
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g).push(n);
  }
  const count = sorted.length;
  cellSize = count <= 40 ? 72 : count <= 400 ? 16 : count <= 2000 ? 9 : 6;
  const gap = cellSize >= 16 ? 3 : 1;
  const pad = 6;
  const perRow = Math.max(1, Math.floor((width - 2 * pad + gap) / (cellSize + gap)));
  const cells = [];
  const titles = [];
  let y = pad;
  const NONE = '\u0000none';
  const order = (a, b) => (a === NONE) - (b === NONE) || NAMES.compare(a, b);
  for (const [g, members] of [...groups.entries()].sort(([a], [b]) => order(a, b))) {
    if (key) {
      const shown = g === NONE ? `no ${key}` : `${key}=${g === '' ? '""' : g}`;
      titles.push({ text: `${shown} (${members.length})`, y: y + 11 });
      y += 16;
    }
    members.forEach((n, i) => {
      cells.push({ node: n.name, x: pad + (i % perRow) * (cellSize + gap), y: y + Math.floor(i / perRow) * (cellSize + gap) });
    });
    y += Math.ceil(members.length / perRow) * (cellSize + gap) + pad;
  }
  layoutCells = cells;
  return { height: Math.max(y, 40), titles };
}

let titles = [];
function draw() {
  if (activeTab !== 'map' || $('app').hidden) return;
  const t0 = performance.now();
  const canvas = $('map');
  const width = $('map-wrap').clientWidth || 800;
  const relayout = layoutDirty;
  if (layoutDirty) {
    const l = layout(width);
    titles = l.titles;
    const dpr = window.devicePixelRatio || 1;
    canvas.width = width * dpr;
    canvas.height = l.height * dpr;
    canvas.style.width = width + 'px';
    canvas.style.height = l.height + 'px';
    canvas.getContext('2d').setTransform(dpr, 0, 0, dpr, 0, 0);
    layoutDirty = false;
  }
  const ctx = canvas.getContext('2d');
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.font = '11px system-ui, sans-serif';
  ctx.fillStyle = '#6b7280';
  for (const t of titles) ctx.fillText(t.text, 6, t.y);
  stats.groups = titles.map((t) => t.text);
  indexPods();
  const dsMode = selected.startsWith('DaemonSet/');
  const now = Date.now();
  const counts = {};
  // Fills are batched by colour (a canvas is slow to switch styles), marks drawn after.
  const byState = {};
  const marked = [];
  for (const c of layoutCells) {
    const n = nodes.get(c.node);
    if (!n) continue;
    const state = cellState(n);
    counts[state] = (counts[state] || 0) + 1;
    if (stats.cellState[n.name] !== state) {
      stats.cellState[n.name] = state;
      stats.paintedAt[n.name] = now;
    }
    (byState[state] || (byState[state] = [])).push(c);
    if (state === 'missing' || (dsMode && !n.ready) || n.unschedulable || n.taints.length || cellSize >= 72) {
      marked.push([c, n, state]);
    }
  }
  for (const [state, cells] of Object.entries(byState)) {
    ctx.fillStyle = COLOURS[state];
    for (const c of cells) ctx.fillRect(c.x, c.y, cellSize, cellSize);
  }
  for (const [c, n, state] of marked) {
    if (state === 'missing') {
      ctx.strokeStyle = '#d97706';
      ctx.lineWidth = 1;
      ctx.strokeRect(c.x + 0.5, c.y + 0.5, cellSize - 1, cellSize - 1);
    }
    if (dsMode && !n.ready) {
      ctx.strokeStyle = COLOURS.notready;
      ctx.lineWidth = cellSize >= 16 ? 3 : 1;
      ctx.strokeRect(c.x + 0.5, c.y + 0.5, cellSize - 1, cellSize - 1);
    }
    if (n.unschedulable && cellSize >= 9) {
      ctx.strokeStyle = '#ffffff';
      ctx.beginPath();
      ctx.moveTo(c.x, c.y + cellSize);
      ctx.lineTo(c.x + cellSize, c.y);
      ctx.stroke();
    }
    if (n.taints.length && cellSize >= 9) {
      // A tainted node: an orange corner.
      const s = Math.max(4, cellSize / 4);
      ctx.fillStyle = TAINT;
      ctx.beginPath();
      ctx.moveTo(c.x + cellSize - s, c.y);
      ctx.lineTo(c.x + cellSize, c.y);
      ctx.lineTo(c.x + cellSize, c.y + s);
      ctx.fill();
    }
    if (cellSize >= 72) {
      ctx.fillStyle = ['missing', 'old-unready', 'new-unready'].includes(state) ? '#1d2330' : '#ffffff';
      ctx.fillText(n.name.length > 11 ? n.name.slice(0, 10) + '…' : n.name, c.x + 5, c.y + cellSize - 8);
    }
  }
  renderLegend(counts);
  const ms = performance.now() - t0;
  if (relayout) {
    // Placing the cells (a sort of every node) happens only when nodes come, go or regroup.
    stats.layouts += 1;
    stats.maxLayoutMs = Math.max(stats.maxLayoutMs, ms);
  } else {
    stats.draws += 1;
    stats.totalDrawMs += ms;
    stats.lastDrawMs = ms;
    stats.maxDrawMs = Math.max(stats.maxDrawMs, ms);
  }
}

let legendHtml = '';
function renderLegend(counts) {
  const parts = Object.keys(LABELS)
    .filter((k) => counts[k])
    .map((k) => `<span data-state="${k}"><i style="background:${COLOURS[k]}"></i>${LABELS[k]}: ${counts[k]}</span>`);
  parts.push(`<span><i style="background:${TAINT}"></i>corner: tainted</span>`);
  const html = parts.join('');
  if (html !== legendHtml) {
    legendHtml = html;
    $('legend').innerHTML = html;
  }
  $('map-summary').textContent = nodes.size + ' nodes';
}

function cellAt(x, y) {
  for (const c of layoutCells) {
    if (x >= c.x && x < c.x + cellSize && y >= c.y && y < c.y + cellSize) return c;
  }
  return null;
}

// Where a node's cell is, in page coordinates (tests click there).
window.shoal.cellCentre = (name) => {
  const c = layoutCells.find((c) => c.node === name);
  if (!c) return null;
  const r = $('map').getBoundingClientRect();
  return { x: Math.round(r.left + c.x + cellSize / 2), y: Math.round(r.top + c.y + cellSize / 2) };
};

function mouse(ev) {
  const r = $('map').getBoundingClientRect();
  return cellAt(ev.clientX - r.left, ev.clientY - r.top);
}

$('map').addEventListener('mousemove', (ev) => {
  const c = mouse(ev);
  const tip = $('tooltip');
  if (!c) {
    tip.hidden = true;
    return;
  }
  const n = nodes.get(c.node);
  const lines = [n.name + (n.ready ? '' : ' (NotReady)') + (n.unschedulable ? ' (cordoned)' : '')];
  for (const t of n.taints) lines.push(`taint ${t.key}${t.value ? '=' + t.value : ''}:${t.effect}`);
  const state = stats.cellState[n.name];
  if (selected.startsWith('DaemonSet/')) lines.push(LABELS[state] || state);
  tip.textContent = lines.join('\n');
  tip.style.left = c.x + cellSize + 8 + 'px';
  tip.style.top = c.y + 'px';
  tip.hidden = false;
});
$('map').addEventListener('mouseleave', () => { $('tooltip').hidden = true; });
$('map').addEventListener('click', (ev) => {
  const c = mouse(ev);
  if (c) selectNode(c.node);
});

function esc(s) {
  return String(s).replace(/[&<>"']/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[ch]));
}

async function selectNode(name) {
  const n = nodes.get(name);
  if (!n) return;
  const panel = $('node-panel');
  const taints = n.taints.length
    ? n.taints.map((t) => `<li><code>${esc(t.key)}${t.value ? '=' + esc(t.value) : ''}:${esc(t.effect)}</code></li>`).join('')
    : '<li>none</li>';
  let html = `<h3>${esc(n.name)}</h3><div>${n.ready ? 'Ready' : 'NotReady'}${n.unschedulable ? ', cordoned' : ''}</div>`
    + `<div>Taints:<ul>${taints}</ul></div>`;
  panel.innerHTML = html;
  panel.hidden = false;
  if (!selected.startsWith('DaemonSet/')) return;
  const [, ns, ds] = selected.split('/');
  try {
    const report = await api('GET', `/shoal/v1/why/namespaces/${ns}/daemonsets/${ds}?node=${encodeURIComponent(name)}`);
    const row = report.rows[0];
    if (row) {
      html += `<div>${esc(ds)} should run here: <strong>${row.shouldRun ? 'yes' : 'no'}</strong>`
        + `${row.pod ? ', pod <code>' + esc(row.pod) + '</code>' : ''}</div><div class="why" id="why-text">${esc(row.why)}</div>`;
    }
  } catch (e) {
    html += `<div class="error">${esc(e.message)}</div>`;
  }
  panel.innerHTML = html;
}
window.shoal.selectNode = selectNode;

$('ds-select').addEventListener('change', (ev) => selectWorkload(ev.target.value));
$('group-select').addEventListener('change', () => scheduleDraw(true));

// ---- rollouts --------------------------------------------------------------------------

function columns(w) {
  const s = w.status || {};
  if (w.kind === 'DaemonSet') {
    return [s.desiredNumberScheduled || 0, s.currentNumberScheduled || 0, s.numberReady || 0,
      s.updatedNumberScheduled || 0, s.numberAvailable || 0];
  }
  const desired = w.spec.replicas === undefined ? 1 : w.spec.replicas;
  const upToDate = w.kind === 'StatefulSet' && s.currentRevision !== s.updateRevision ? s.updatedReplicas || 0
    : w.kind === 'StatefulSet' ? s.replicas || 0 : s.updatedReplicas || 0;
  return [desired, s.replicas || 0, s.readyReplicas || 0, upToDate, s.availableReplicas || 0];
}

function bar(desired, updated, available) {
  const pct = (x) => (desired ? Math.min(100, (100 * x) / desired) : 100).toFixed(1);
  return `<div class="bar" title="updated ${updated}/${desired}, available ${available}/${desired}">`
    + `<span class="up" style="width:${pct(updated)}%"></span><span class="av" style="width:${pct(available)}%"></span></div>`;
}

let workloadsPending = false;
function workloadsChanged() {
  if (workloadsPending) return;
  workloadsPending = true;
  setTimeout(() => {
    workloadsPending = false;
    renderWorkloads();
  }, 100);
}

let rolloutsHtml = '';
function renderWorkloads() {
  if (pendingSelect && workloads.has(pendingSelect)) selectWorkload(pendingSelect);
  const select = $('ds-select');
  const dsKeys = [...workloads.keys()].filter((k) => k.startsWith('DaemonSet/')).sort();
  const have = [...select.options].map((o) => o.value).slice(1);
  if (JSON.stringify(have) !== JSON.stringify(dsKeys)) {
    select.length = 1;
    for (const k of dsKeys) select.add(new Option(k.slice('DaemonSet/'.length), k));
    select.value = selected.startsWith('DaemonSet/') ? selected : '';
  }
  const rows = [...workloads.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([key, w]) => {
    const [desired, current, ready, upToDate, available] = columns(w);
    return `<tr data-key="${esc(key)}"${key === selected ? ' class="selected"' : ''}><td>${esc(w.metadata.namespace)}</td>`
      + `<td>${w.kind}</td><td>${esc(w.metadata.name)}</td><td>${desired}</td><td>${current}</td><td>${ready}</td>`
      + `<td>${upToDate}</td><td>${available}</td><td>${bar(desired, upToDate, available)}</td></tr>`;
  });
  for (const [kind, message] of Object.entries(rolloutDenied)) {
    rows.push(`<tr class="forbidden"><td colspan="9">${KIND_PATHS[kind]}: Forbidden: ${esc(message)}</td></tr>`);
  }
  const html = rows.join('');
  if (html !== rolloutsHtml) {
    rolloutsHtml = html;
    $('rollouts').querySelector('tbody').innerHTML = html;
  }
  renderDetail();
}

$('rollouts').querySelector('tbody').addEventListener('click', (ev) => {
  const tr = ev.target.closest('tr[data-key]');
  if (tr) selectWorkload(tr.dataset.key);
});

const ANN = {
  paused: 'shoal.dev/rollout-paused',
  partition: 'shoal.dev/rollout-partition',
  canary: 'shoal.dev/rollout-node-selector',
  deadline: 'shoal.dev/progress-deadline-seconds',
};

function revisionRows(w) {
  const desired = columns(w)[0];
  if (w.kind === 'Deployment') {
    return [...replicaSets.values()]
      .map((r) => ({ n: +((r.metadata.annotations || {})['deployment.kubernetes.io/revision'] || 0), r }))
      .sort((a, b) => b.n - a.n)
      .map(({ n, r }) => ({ label: `revision ${n} (${r.metadata.name})`, total: (r.status && r.status.replicas) || 0,
        ready: (r.status && r.status.readyReplicas) || 0, desired }));
  }
  const byHash = new Map();
  for (const p of dsPods.values()) {
    if (p.deleting) continue;
    const e = byHash.get(p.hash) || { total: 0, ready: 0 };
    e.total += 1;
    if (p.ready) e.ready += 1;
    byHash.set(p.hash, e);
  }
  return [...byHash.entries()]
    .map(([hash, e]) => ({ n: (revisions.get(hash) || {}).number || 0, hash, e }))
    .sort((a, b) => b.n - a.n)
    .map(({ n, hash, e }) => ({ label: `revision ${n || '?'} (${hash})${hash === currentHash ? ', current' : ''}`,
      total: e.total, ready: e.ready, desired }));
}

function renderDetail() {
  const w = workloads.get(selected);
  const targets = [$('rollout-detail'), $('ds-rollout')];
  if (!w) {
    for (const t of targets) t.innerHTML = '';
    return;
  }
  const [desired, current, ready, upToDate, available] = columns(w);
  const a = w.metadata.annotations || {};
  const progressing = ((w.status && w.status.conditions) || []).find((c) => c.type === 'Progressing');
  let html = `<h3>${w.kind} ${esc(w.metadata.namespace)}/${esc(w.metadata.name)}</h3>`
    + `<div class="counts">DESIRED ${desired} · CURRENT ${current} · READY ${ready} · UP-TO-DATE ${upToDate} · AVAILABLE ${available}</div>`
    + bar(desired, upToDate, available);
  if (progressing) html += `<div>Progressing: ${esc(progressing.status)} (${esc(progressing.reason || '')}) ${esc(progressing.message || '')}</div>`;
  html += '<div class="revisions">'
    + revisionRows(w).map((r) => `<div class="row">${bar(r.desired, r.total, r.ready)}<span>${esc(r.label)}: ${r.total} pods, ${r.ready} ready</span></div>`).join('')
    + '</div><div class="controls">';
  if (w.kind === 'DaemonSet') {
    html += `<label><input type="checkbox" id="c-paused"${a[ANN.paused] === 'true' ? ' checked' : ''}> paused</label>`
      + `<label>partition <input type="text" id="c-partition" value="${esc(a[ANN.partition] || '')}" placeholder="N or N%"></label>`
      + `<label>canary nodes <input type="text" id="c-canary" value="${esc(a[ANN.canary] || '')}" placeholder="label selector"></label>`
      + `<label>deadline (s) <input type="number" id="c-deadline" value="${esc(a[ANN.deadline] || '')}"></label>`;
  } else if (w.kind === 'Deployment') {
    html += `<label><input type="checkbox" id="c-paused"${w.spec.paused ? ' checked' : ''}> paused</label>`;
  } else {
    const p = ((w.spec.updateStrategy || {}).rollingUpdate || {}).partition;
    html += `<label>partition <input type="number" id="c-partition" value="${p === undefined ? '' : p}"></label>`;
  }
  html += '<button id="c-apply">Apply</button><button id="c-restart">Restart</button><button id="c-undo">Undo</button></div>';
  // Never redraw under a control the user is working (typing, a box just ticked).
  const focused = document.activeElement && document.activeElement.id;
  if (focused && focused.startsWith('c-') && !['c-apply', 'c-restart', 'c-undo'].includes(focused)) return;
  // The controls live once, where the user is looking.
  for (const t of targets) t.innerHTML = '';
  const target = activeTab === 'rollouts' ? targets[0] : targets[1];
  target.innerHTML = html;
  $('c-apply').addEventListener('click', () => applyControls(w));
  $('c-restart').addEventListener('click', () => restart(w));
  $('c-undo').addEventListener('click', () => undo(w));
}

async function act(what, fn) {
  try {
    await fn();
    banner('');
  } catch (e) {
    banner(what + ': ' + e.message);
  }
}

function applyControls(w) {
  return act('Apply', async () => {
    let patch;
    if (w.kind === 'DaemonSet') {
      const value = (id) => $(id).value.trim() || null;
      patch = { metadata: { annotations: {
        [ANN.paused]: $('c-paused').checked ? 'true' : null,
        [ANN.partition]: value('c-partition'),
        [ANN.canary]: value('c-canary'),
        [ANN.deadline]: value('c-deadline'),
      } } };
    } else if (w.kind === 'Deployment') {
      patch = { spec: { paused: $('c-paused').checked } };
    } else {
      const v = $('c-partition').value.trim();
      patch = { spec: { updateStrategy: { type: 'RollingUpdate', rollingUpdate: { partition: v === '' ? 0 : Number(v) } } } };
    }
    await api('PATCH', workloadPath(w), patch, 'application/merge-patch+json');
  });
}

function restart(w) {
  if (!confirm(`Restart every pod of ${w.kind} ${w.metadata.name}?`)) return;
  return act('Restart', () => api('PATCH', workloadPath(w), {
    spec: { template: { metadata: { annotations: { 'kubectl.kubernetes.io/restartedAt': new Date().toISOString() } } } },
  }, 'application/merge-patch+json'));
}

// `kubectl rollout undo`: back to the previous revision.
async function undo(w) {
  if (!confirm(`Roll ${w.kind} ${w.metadata.name} back to its previous revision?`)) return;
  await act('Undo', async () => {
    const ns = w.metadata.namespace;
    const sel = encodeURIComponent(selectorString(w.spec.selector));
    if (w.kind === 'Deployment') {
      const list = await api('GET', `/apis/apps/v1/namespaces/${ns}/replicasets?labelSelector=${sel}`);
      const owned = list.items.filter((r) => ownedBy(r, w))
        .map((r) => ({ n: +((r.metadata.annotations || {})['deployment.kubernetes.io/revision'] || 0), r }))
        .sort((a, b) => b.n - a.n);
      if (owned.length < 2) throw new Error('no previous revision');
      const template = JSON.parse(JSON.stringify(owned[1].r.spec.template));
      if (template.metadata && template.metadata.labels) delete template.metadata.labels['pod-template-hash'];
      await api('PATCH', workloadPath(w), [{ op: 'replace', path: '/spec/template', value: template }], 'application/json-patch+json');
      return;
    }
    const list = await api('GET', `/apis/apps/v1/namespaces/${ns}/controllerrevisions?labelSelector=${sel}`);
    const owned = list.items.filter((r) => ownedBy(r, w)).sort((a, b) => b.revision - a.revision);
    if (owned.length < 2) throw new Error('no previous revision');
    await api('PATCH', workloadPath(w), owned[1].data, 'application/strategic-merge-patch+json');
  });
}

// ---- objects ---------------------------------------------------------------------------

const KINDS = [
  ['pods', '/api/v1', true], ['nodes', '/api/v1', false], ['namespaces', '/api/v1', false],
  ['services', '/api/v1', true], ['endpoints', '/api/v1', true], ['configmaps', '/api/v1', true],
  ['secrets', '/api/v1', true], ['serviceaccounts', '/api/v1', true], ['persistentvolumeclaims', '/api/v1', true],
  ['persistentvolumes', '/api/v1', false], ['events', '/api/v1', true],
  ['daemonsets', '/apis/apps/v1', true], ['deployments', '/apis/apps/v1', true], ['replicasets', '/apis/apps/v1', true],
  ['statefulsets', '/apis/apps/v1', true], ['controllerrevisions', '/apis/apps/v1', true],
  ['jobs', '/apis/batch/v1', true], ['cronjobs', '/apis/batch/v1', true],
  ['ingresses', '/apis/networking.k8s.io/v1', true], ['networkpolicies', '/apis/networking.k8s.io/v1', true],
  ['roles', '/apis/rbac.authorization.k8s.io/v1', true], ['rolebindings', '/apis/rbac.authorization.k8s.io/v1', true],
  ['clusterroles', '/apis/rbac.authorization.k8s.io/v1', false],
  ['clusterrolebindings', '/apis/rbac.authorization.k8s.io/v1', false],
  ['customresourcedefinitions', '/apis/apiextensions.k8s.io/v1', false],
  ['leases', '/apis/coordination.k8s.io/v1', true],
];
for (const [plural] of KINDS) $('kind-select').add(new Option(plural, plural));

const TABLE = 'application/json;as=Table;v=v1;g=meta.k8s.io, application/json';
let objectsWatch = null;
let namespacesLoaded = false;

function collectionPath() {
  const [plural, base, namespaced] = KINDS.find((k) => k[0] === $('kind-select').value);
  const ns = $('ns-select').value;
  return { path: namespaced && ns ? `${base}/namespaces/${ns}/${plural}` : `${base}/${plural}`, base, plural, namespaced };
}

async function loadNamespaces() {
  if (namespacesLoaded) return;
  namespacesLoaded = true;
  try {
    const list = await api('GET', '/api/v1/namespaces');
    for (const n of list.items) $('ns-select').add(new Option(n.metadata.name, n.metadata.name));
  } catch (_) { /* the user may not list namespaces: "(all)" then means what it may read */ }
}

let tablePending = false;
function loadObjects() {
  loadNamespaces();
  if (objectsWatch) objectsWatch.stop();
  const { path } = collectionPath();
  renderTable(path);
  // Live: every change re-reads the Table (at most every half second).
  objectsWatch = new Watch(path, {
    reset() {},
    event() {
      if (tablePending) return;
      tablePending = true;
      setTimeout(() => { tablePending = false; renderTable(path); }, 500);
    },
  }).start();
}

async function renderTable(path) {
  const table = $('objects');
  try {
    const t = await api('GET', path, undefined, undefined, TABLE);
    if (path !== collectionPath().path) return;
    const cols = (t.columnDefinitions || []).map((c, i) => ({ c, i })).filter(({ c }) => !c.priority);
    const showNs = collectionPath().namespaced && !$('ns-select').value;
    table.querySelector('thead').innerHTML = '<tr>' + (showNs ? '<th>NAMESPACE</th>' : '')
      + cols.map(({ c }) => `<th>${esc(c.name.toUpperCase())}</th>`).join('') + '</tr>';
    table.querySelector('tbody').innerHTML = (t.rows || []).map((r) => {
      const meta = (r.object && r.object.metadata) || {};
      const ns = meta.namespace || '';
      return `<tr data-ns="${esc(ns)}" data-name="${esc(meta.name || r.cells[0])}">` + (showNs ? `<td>${esc(ns)}</td>` : '')
        + cols.map(({ i }) => `<td>${esc(r.cells[i] === undefined || r.cells[i] === null ? '' : r.cells[i])}</td>`).join('') + '</tr>';
    }).join('');
  } catch (e) {
    table.querySelector('thead').innerHTML = '';
    table.querySelector('tbody').innerHTML = `<tr><td class="forbidden msg">${e.status === 403 ? 'Forbidden: ' : ''}${esc(e.message)}</td></tr>`;
  }
}

$('kind-select').addEventListener('change', loadObjects);
$('ns-select').addEventListener('change', loadObjects);

let logStream = null;
$('objects').querySelector('tbody').addEventListener('click', async (ev) => {
  const tr = ev.target.closest('tr[data-name]');
  if (!tr) return;
  const { base, plural } = collectionPath();
  const ns = tr.dataset.ns;
  const path = ns ? `${base}/namespaces/${ns}/${plural}/${tr.dataset.name}` : `${base}/${plural}/${tr.dataset.name}`;
  if (logStream) logStream.abort();
  $('object-log').hidden = true;
  try {
    const obj = await api('GET', path);
    delete obj.metadata.managedFields;
    $('object-title').textContent = `${plural}/${obj.metadata.name}`;
    $('object-yaml').textContent = toYaml(obj);
    $('object-view').hidden = false;
    $('object-logs').hidden = plural !== 'pods';
    $('object-logs').onclick = () => followLogs(path, obj);
  } catch (e) {
    banner(e.message);
  }
});
$('object-close').addEventListener('click', () => {
  if (logStream) logStream.abort();
  $('object-view').hidden = true;
});

async function followLogs(path, pod) {
  if (logStream) logStream.abort();
  logStream = new AbortController();
  const out = $('object-log');
  out.hidden = false;
  out.textContent = '';
  const container = pod.spec.containers[0].name;
  try {
    const resp = await fetch(`${path}/log?follow=true&tailLines=500&container=${encodeURIComponent(container)}`,
      { headers: headers(), signal: logStream.signal });
    if (!resp.ok) throw await apiError(resp);
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      out.textContent += decoder.decode(value, { stream: true });
      if (out.textContent.length > 200000) out.textContent = out.textContent.slice(-100000);
      out.scrollTop = out.scrollHeight;
    }
  } catch (e) {
    if (e.name !== 'AbortError') out.textContent += '\n[' + e.message + ']';
  }
}

// JSON to YAML, for reading (strings that YAML would take for something else are quoted).
function yamlScalar(v) {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  const s = String(v);
  if (s === '' || /^[\s\-?:,[\]{}#&*!|>'"%@`]|[\s]$|: | #|\n/.test(s)
    || /^(true|false|null|yes|no|on|off|y|n|~)$/i.test(s) || /^[-+]?(\d|\.\d)/.test(s)) return JSON.stringify(s);
  return s;
}

function isEmpty(v) {
  return v && typeof v === 'object' && (Array.isArray(v) ? v.length === 0 : Object.keys(v).length === 0);
}

function toYaml(v, ind) {
  ind = ind || '';
  if (Array.isArray(v)) {
    return v.map((x) => {
      if (x && typeof x === 'object' && !isEmpty(x)) {
        const inner = toYaml(x, ind + '  ');
        return ind + '- ' + inner.slice(ind.length + 2);
      }
      return ind + '- ' + (isEmpty(x) ? (Array.isArray(x) ? '[]' : '{}') : yamlScalar(x));
    }).join('\n');
  }
  if (v && typeof v === 'object') {
    return Object.keys(v).map((k) => {
      const x = v[k];
      const key = ind + yamlScalar(k) + ':';
      if (x && typeof x === 'object' && !isEmpty(x)) return key + '\n' + toYaml(x, Array.isArray(x) ? ind : ind + '  ');
      return key + ' ' + (isEmpty(x) ? (Array.isArray(x) ? '[]' : '{}') : yamlScalar(x));
    }).join('\n');
  }
  return ind + yamlScalar(v);
}
window.shoal.toYaml = toYaml;

// ---- events ----------------------------------------------------------------------------

const events = new Map();
let eventsWatch = null;
let eventsPending = false;

function startEvents() {
  if (eventsWatch) return;
  const changed = () => {
    if (eventsPending) return;
    eventsPending = true;
    setTimeout(() => { eventsPending = false; renderEvents(); }, 200);
  };
  eventsWatch = new Watch('/api/v1/events', {
    reset(items) {
      events.clear();
      for (const e of items) events.set(e.metadata.uid, e);
      changed();
    },
    event(type, e) {
      if (type === 'DELETED') events.delete(e.metadata.uid);
      else events.set(e.metadata.uid, e);
      changed();
    },
    denied(err) {
      $('events').querySelector('tbody').innerHTML = `<tr><td colspan="6" class="forbidden msg">Forbidden: ${esc(err.message)}</td></tr>`;
    },
  }).start();
}

function eventTime(e) {
  return e.lastTimestamp || e.eventTime || (e.series && e.series.lastObservedTime) || e.metadata.creationTimestamp || '';
}

function age(ts) {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(ts)) / 1000));
  return s < 120 ? s + 's' : s < 7200 ? Math.round(s / 60) + 'm' : Math.round(s / 3600) + 'h';
}

function renderEvents() {
  const rows = [...events.values()].sort((a, b) => eventTime(b).localeCompare(eventTime(a))).slice(0, 300);
  $('events').querySelector('tbody').innerHTML = rows.map((e) => {
    const o = e.involvedObject || {};
    return `<tr><td>${age(eventTime(e))}</td><td>${esc(e.metadata.namespace || '')}</td><td>${esc(e.type || '')}</td>`
      + `<td>${esc(e.reason || '')}</td><td>${esc((o.kind || '').toLowerCase() + '/' + (o.name || ''))}</td>`
      + `<td class="msg">${esc(e.message || '')}</td></tr>`;
  }).join('');
}

// ---- start -----------------------------------------------------------------------------

if (token) signIn(token);
