// ENPIRE dashboard: one WebSocket update per second (the server drops updates a slow page
// cannot take), drawn with plain DOM and a canvas: nothing is loaded from the internet.
'use strict';
const COLOURS = ['#1565c0', '#c62828', '#2e7d32', '#6a1b9a', '#ef6c00', '#00838f'];
const state = { updates: 0, points: 0, frames: {}, control: false };
window.enpireDashboard = state;          // read by the headless browser test

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function token() {
  const m = /token=([^&]+)/.exec(location.hash);
  return m ? decodeURIComponent(m[1]) : '';
}

async function command(cell, verb) {
  const r = await fetch(`/api/cells/${encodeURIComponent(cell)}/${verb}`, {
    method: 'POST', headers: { Authorization: `Bearer ${token()}` } });
  const body = await r.json().catch(() => ({}));
  alert(r.ok ? `${cell}: ${verb}: ${body.message || 'ok'}` : `${cell}: ${verb} refused (${r.status}): ${body.error}`);
}

function drawCells(update) {
  const box = document.getElementById('cells');
  box.replaceChildren();
  if (!update.cells.length) box.append('no cell is running on this ROS domain');
  for (const c of update.cells) {
    const img = el('img', { alt: `${c.cell} camera`, id: `frame-${c.cell}` });
    const frame = (update.frames || {})[c.cell];
    if (frame) { img.src = frame; state.frames[c.cell] = frame; }
    const mode = el('span', { class: c.mode === 'fault' ? 'bad' : 'ok' }, c.mode);
    const card = el('div', { class: 'cell' },
      el('strong', {}, c.cell), ' ', c.task, ' ', mode, el('br'),
      `episode ${c.episode} step ${c.step} seed ${c.seed} revision ${c.active_revision || '-'}`,
      img);
    if (update.control) {
      const controls = el('div', { class: 'controls' });
      for (const verb of ['pause', 'resume', 'home']) {
        const b = el('button', {}, verb);
        b.onclick = () => command(c.cell, verb);
        controls.append(b);
      }
      card.append(controls);
    }
    box.append(card);
  }
}

function drawCurve(exp) {
  const canvas = document.getElementById('curve');
  const g = canvas.getContext('2d');
  g.clearRect(0, 0, canvas.width, canvas.height);
  const legend = document.getElementById('legend');
  legend.replaceChildren();
  const curves = Object.entries((exp && exp.curves) || {});
  let tMax = 1, sMax = 1, points = 0;
  for (const [, c] of curves) {
    tMax = Math.max(tMax, ...c.t); sMax = Math.max(sMax, ...c.successes);
    points += c.t.length;
  }
  const L = 40, B = 24, W = canvas.width - L - 10, H = canvas.height - B - 10;
  g.strokeStyle = '#999'; g.beginPath(); g.moveTo(L, 10); g.lineTo(L, 10 + H);
  g.lineTo(L + W, 10 + H); g.stroke();
  g.fillStyle = '#555'; g.font = '11px sans-serif';
  g.fillText(`${sMax}`, 4, 16); g.fillText('0', 24, 10 + H);
  g.fillText(`${Math.round(tMax)} s`, L + W - 40, canvas.height - 6);
  g.fillText('successes', L + 6, 22);
  curves.forEach(([agent, c], i) => {
    const colour = COLOURS[i % COLOURS.length];
    const xy = (t, s) => [L + W * t / tMax, 10 + H - H * s / sMax];
    g.strokeStyle = colour; g.fillStyle = colour; g.lineWidth = 2; g.beginPath();
    g.moveTo(...xy(0, 0));                       // every agent starts at 0 successes
    c.t.forEach((t, k) => g.lineTo(...xy(t, c.successes[k])));
    g.stroke();
    c.t.forEach((t, k) => {                      // one dot per finished trial
      const [x, y] = xy(t, c.successes[k]);
      g.beginPath(); g.arc(x, y, 2.5, 0, 2 * Math.PI); g.fill();
    });
    legend.append(el('span', { style: `color:${colour}` },
      `${agent}: ${c.successes[c.successes.length - 1] || 0}/${c.trials}`));
  });
  state.points = points;
}

function table(id, header, rows) {
  const t = document.getElementById(id);
  t.replaceChildren(el('tr', {}, ...header.map(h => el('th', {}, h))));
  for (const r of rows) t.append(el('tr', {}, ...r.map(v => el('td', {}, v))));
}

function drawIdeas(exp) {
  const root = document.getElementById('ideas');
  root.replaceChildren();
  const nodes = (exp && exp.ideas) || [];
  const kids = {};
  for (const n of nodes) (kids[n.parent || ''] = kids[n.parent || ''] || []).push(n);
  const known = new Set(nodes.map(n => n.id));
  const add = (ul, n) => {
    const li = el('li', {}, el('span', { class: 'tag' }, n.id), ` ${n.branch} ${n.status} `,
      `${n.successes}/${n.trials}`, n.hypothesis ? ` · ${n.hypothesis}` : '');
    const sub = el('ul');
    for (const c of kids[n.id] || []) add(sub, c);
    if (sub.childElementCount) li.append(sub);
    ul.append(li);
  };
  for (const n of nodes) if (!n.parent || !known.has(n.parent)) add(root, n);
}

function apply(update) {
  state.updates += 1;
  state.control = update.control;
  drawCells(update);
  const exp = update.experiment;
  document.getElementById('experiment').textContent = exp && exp.experiment
    ? `${exp.experiment} (${exp.task}): ${exp.n_success}/${exp.n_trials} successes, ${Math.round(exp.elapsed_s)} s`
    : 'no experiment yet';
  drawCurve(exp);
  table('mru', ['cell', 'MRU'], Object.entries((exp && exp.mru) || {})
    .map(([c, v]) => [c, `${(100 * v).toFixed(1)}%`]));
  table('tokens', ['agent', 'tokens', 'per min'], Object.entries((exp && exp.tokens) || {})
    .map(([a, v]) => [a, v.tokens, Math.round(v.tokens_per_min)]));
  document.getElementById('last').textContent = exp && exp.last_trial
    ? JSON.stringify(exp.last_trial, null, 1) : '-';
  drawIdeas(exp);
}

function connect() {
  const link = document.getElementById('link');
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`);
  ws.onopen = () => { link.textContent = 'live'; link.className = 'ok'; };
  ws.onmessage = (ev) => apply(JSON.parse(ev.data));
  ws.onclose = () => { link.textContent = 'reconnecting'; link.className = 'bad';
                       setTimeout(connect, 1000); };
}
connect();
