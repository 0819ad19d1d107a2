/**
 * The approver page: HTML, CSS and JS as strings. No framework, no external assets; the script
 * and style are served as separate files so the CSP can forbid inline code. Untrusted text
 * (arguments, rationale, task input) is only ever set through `textContent`.
 */

/** Escapes text for a double-quoted HTML attribute. */
export const escapeAttr = (s: string) => s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');

/**
 * The page shell; `csrf` is the session's token, read by the script from a meta tag. `tasksLink`
 * adds the link to the task view (and its styles) when the server has one.
 */
export function renderPage({ csrf, tasksLink = false }: { csrf: string; tasksLink?: boolean }): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="troupe-csrf" content="${escapeAttr(csrf)}">
<title>troupe · approvals</title>
<link rel="stylesheet" href="/app.css">
<script src="/app.js" defer></script>
${tasksLink ? '<link rel="stylesheet" href="/task-view.css">\n' : ''}</head>
<body>
<header><h1>troupe approvals</h1>${tasksLink ? '<a class="nav" href="/tasks">Tasks</a>' : ''}<span id="status" class="status">connecting…</span></header>
<main>
  <section id="list-pane" aria-label="Waiting requests">
    <h2>Waiting <span id="count"></span></h2>
    <p id="empty" class="hint" hidden>Nothing is waiting for you.</p>
    <ul id="requests"></ul>
  </section>
  <section id="detail" aria-label="Selected request"><p class="hint">Select a request on the left.</p></section>
</main>
<div id="outcome" role="status" aria-live="polite" hidden></div>
</body>
</html>
`;
}

export const APP_CSS = `
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d2330;background:#f4f5f7}
header{display:flex;align-items:baseline;gap:1rem;padding:.7rem 1.2rem;background:#1d2330;color:#fff}
h1{font-size:1.1rem;margin:0}
h2{font-size:1rem;margin:0 0 .6rem}
.status{font-size:.85rem;opacity:.8}
main{display:grid;grid-template-columns:minmax(240px,340px) 1fr;gap:1rem;padding:1rem 1.2rem;align-items:start}
section{background:#fff;border:1px solid #dde0e6;border-radius:8px;padding:1rem}
ul{list-style:none;margin:0;padding:0}
#requests li{padding:.55rem .6rem;border-radius:6px;cursor:pointer;border:1px solid transparent;margin-bottom:.3rem}
#requests li:hover{background:#f0f3f9}
#requests li[aria-selected=true]{background:#e4ecfb;border-color:#9db7ea}
#requests .title{font-weight:600}
#requests .meta{font-size:.82rem;color:#5b6475}
.hint{color:#5b6475}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.35rem 1rem;margin:.6rem 0 1rem}
dt{color:#5b6475}
dd{margin:0;min-width:0}
pre{margin:0;padding:.5rem;background:#f6f7f9;border:1px solid #e3e6eb;border-radius:6px;overflow:auto;max-height:18rem;font-size:.85rem}
.badge{display:inline-block;padding:0 .45rem;border-radius:999px;font-size:.8rem;background:#e8eaee;margin-right:.3rem}
.badge.irreversible{background:#fbe0de;color:#8c1d15}
.badge.reversible{background:#fff1cc;color:#6b4e00}
.badge.read{background:#dcf3e3;color:#17622f}
label{display:block;margin:.6rem 0 .2rem;font-size:.88rem;color:#3b4354}
textarea,input{width:100%;font:inherit;padding:.4rem;border:1px solid #c5cad3;border-radius:6px}
textarea.code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85rem;min-height:8rem}
.actions{display:flex;gap:.5rem;margin-top:.8rem;flex-wrap:wrap}
button{font:inherit;padding:.45rem 1rem;border-radius:6px;border:1px solid #c5cad3;background:#fff;cursor:pointer}
button.approve{background:#1f7a3d;border-color:#1f7a3d;color:#fff}
button.reject{background:#b3261e;border-color:#b3261e;color:#fff}
button:disabled{opacity:.55;cursor:wait}
#outcome{position:fixed;right:1.2rem;bottom:1.2rem;max-width:32rem;padding:.8rem 1rem;border-radius:8px;background:#1d2330;color:#fff;white-space:pre-line}
#outcome.ok{background:#1f7a3d}
#outcome.error{background:#b3261e}
@media (max-width:760px){main{grid-template-columns:1fr}}
`;

/**
 * The pages' one DOM helper (browser JavaScript source): `el(tag, attrs, ...children)` builds an
 * element; `text` sets its text (never HTML), `onclick` adds a listener, anything else is an
 * attribute.
 */
export const DOM_JS = String.raw`function el(tag, attrs) {
    var node = document.createElement(tag);
    for (var k in attrs || {}) {
      if (k === 'text') node.textContent = attrs[k];
      else if (k === 'onclick') node.addEventListener('click', attrs[k]);
      else node.setAttribute(k, attrs[k]);
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c !== null && c !== undefined) node.append(c);
    }
    return node;
  }`;

export const APP_JS = String.raw`'use strict';
(function () {
  var csrf = document.querySelector('meta[name="troupe-csrf"]').content;
  var state = { requests: [], selected: null };
  var $ = function (id) { return document.getElementById(id); };

  ${DOM_JS}
  function ago(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
    return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  }
  function amount(name, n) { return name === 'usd' ? '$' + Number(n).toFixed(4) : String(n); }
  function pretty(v) { return v === undefined ? '(none)' : JSON.stringify(v, null, 2); }
  function titleOf(r) { return r.kind === 'limit' ? 'Grant more ' + r.limit.name : 'Run ' + r.tool.name; }

  function renderList() {
    var ul = $('requests');
    ul.replaceChildren();
    $('count').textContent = state.requests.length ? '(' + state.requests.length + ')' : '';
    $('empty').hidden = state.requests.length > 0;
    state.requests.forEach(function (r) {
      ul.append(el('li', { 'data-request-id': r.requestId, role: 'option', 'aria-selected': String(r.requestId === state.selected), tabindex: '0',
        onclick: function () { select(r.requestId); } },
        el('div', { class: 'title', text: titleOf(r) }),
        el('div', { class: 'meta', text: r.agent + ' · task ' + r.taskId }),
        el('div', { class: 'meta' }, 'waiting ', el('span', { class: 'age', 'data-created': String(r.createdAt), text: ago(Date.now() - r.createdAt) }))));
    });
  }
  function tick() {
    document.querySelectorAll('[data-created]').forEach(function (n) { n.textContent = ago(Date.now() - Number(n.getAttribute('data-created'))); });
    document.querySelectorAll('[data-deadline]').forEach(function (n) {
      var left = Number(n.getAttribute('data-deadline')) - Date.now();
      n.textContent = left > 0 ? 'in ' + ago(left) : 'expired';
    });
  }
  function select(id) {
    state.selected = id;
    renderList();
    renderDetail();
  }

  function row(dl, label, value) {
    if (value === null || value === undefined || value === '') return;
    dl.append(el('dt', { text: label }), el('dd', {}, value));
  }
  function renderDetail() {
    var pane = $('detail');
    var r = state.requests.find(function (x) { return x.requestId === state.selected; });
    pane.setAttribute('data-shown', r ? r.requestId : '');
    if (!r) { pane.replaceChildren(el('p', { class: 'hint', text: state.selected ? 'This request is no longer waiting.' : 'Select a request on the left.' })); return; }
    var dl = el('dl');
    row(dl, 'Task', r.taskId + ' (agent ' + r.agent + ')');
    row(dl, 'Why you are asked', r.reason);
    var grantInput = null, argsArea = null;
    if (r.kind === 'limit') {
      row(dl, 'Limit', r.limit.name + ': ' + amount(r.limit.name, r.limit.used) + ' used of ' + amount(r.limit.name, r.limit.max));
      if (r.reason.indexOf(r.limit.message) < 0) row(dl, 'Detail', r.limit.message);
      grantInput = el('input', { id: 'grant', type: 'number', min: '0', step: 'any', value: String(r.ask.amount) });
    } else {
      row(dl, 'Tool', el('span', {}, el('strong', { text: r.tool.name }), ' — ' + r.tool.description));
      row(dl, 'Reversibility', el('span', { class: 'badge ' + r.tool.reversibility, text: r.tool.reversibility }));
      row(dl, 'Escalated because', el('span', {}, ...r.reasons.map(function (x) { return el('span', { class: 'badge', text: x.replace(/_/g, ' ') }); })));
      row(dl, 'Arguments', el('pre', { id: 'args', text: pretty(r.args) }));
      row(dl, 'Agent rationale', r.rationale);
      row(dl, 'Agent confidence', r.confidence === undefined ? null : Math.round(r.confidence * 100) + ' %');
      row(dl, 'Amount', r.amount === undefined ? null : String(r.amount));
      row(dl, 'Approvers needed', r.quorum ? String(r.quorum) + ' different approvers' : null);
      row(dl, 'Task input', el('pre', { text: pretty(r.taskInput) }));
    }
    if (r.deadlineAt) row(dl, 'Deadline', el('span', {}, new Date(r.deadlineAt).toLocaleString() + ' (', el('span', { 'data-deadline': String(r.deadlineAt) }), ')' + (r.onDeadline === 'escalate' ? ', then escalated' : ', then rejected')));
    row(dl, 'Tier', r.tier && r.tier > 1 ? 'escalated to tier ' + r.tier : null);
    row(dl, 'Spent so far', '$' + r.spent.usd.toFixed(4) + ', ' + r.spent.tokens + ' tokens, ' + r.spent.steps + ' steps');
    row(dl, 'Waiting', el('span', { 'data-created': String(r.createdAt) }));
    var reason = el('textarea', { id: 'reason', rows: '2', placeholder: 'Optional for approve; the model sees it on reject' });
    var actions = el('div', { class: 'actions' });
    var buttons = [];
    function button(label, cls, id, fn) { var b = el('button', { class: cls, id: id, type: 'button', text: label, onclick: fn }); buttons.push(b); actions.append(b); return b; }
    function send(body) {
      body.requestId = r.requestId;
      if (reason.value.trim()) body.reason = reason.value.trim();
      buttons.forEach(function (b) { b.disabled = true; });
      decide(body).finally(function () { buttons.forEach(function (b) { b.disabled = false; }); });
    }
    button(r.kind === 'limit' ? 'Approve (grant)' : 'Approve', 'approve', 'approve', function () {
      var body = { verdict: 'approve' };
      if (grantInput && grantInput.value !== '') body.grant = Number(grantInput.value);
      send(body);
    });
    button('Reject', 'reject', 'reject', function () { send({ verdict: 'reject' }); });
    if (r.kind === 'tool') {
      argsArea = el('textarea', { id: 'edit-args', class: 'code', spellcheck: 'false' });
      argsArea.value = pretty(r.args);
      var editBox = el('div', { hidden: '' }, el('label', { for: 'edit-args', text: 'Edited arguments (JSON; the host re-validates them against the tool schema)' }), argsArea);
      button('Edit…', '', 'edit', function () { editBox.hidden = !editBox.hidden; });
      var sendEdit = el('button', { class: 'approve', id: 'send-edit', type: 'button', text: 'Approve with these arguments' });
      buttons.push(sendEdit);
      sendEdit.addEventListener('click', function () {
        var args;
        try { args = JSON.parse(argsArea.value); } catch (e) { show(false, 'The arguments are not valid JSON: ' + e.message); return; }
        send({ verdict: 'edit', args: args });
      });
      editBox.append(el('div', { class: 'actions' }, sendEdit));
      pane.replaceChildren(el('h2', { text: titleOf(r) + '?' }), dl, el('label', { for: 'reason', text: 'Reason' }), reason, actions, editBox);
    } else {
      pane.replaceChildren(el('h2', { text: titleOf(r) + '?' }), dl, el('label', { for: 'grant', text: 'Grant (' + r.limit.name + ')' }), grantInput, el('label', { for: 'reason', text: 'Reason' }), reason, actions);
    }
    tick();
  }

  function show(ok, text) {
    var box = $('outcome');
    box.className = ok ? 'ok' : 'error';
    box.textContent = text;
    box.hidden = false;
  }
  function decide(body) {
    var r = state.requests.find(function (x) { return x.requestId === body.requestId; });
    return fetch('/api/decisions', { method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json', 'X-Troupe-CSRF': csrf }, body: JSON.stringify(body) })
      .then(function (res) { return res.json().catch(function () { return { ok: false, error: { code: 'http_' + res.status, message: res.statusText } }; }); })
      .then(function (result) {
        var what = body.verdict === 'reject' ? 'Rejected' : body.verdict === 'edit' ? 'Approved with edited arguments' : 'Approved';
        if (result.ok && result.awaiting) show(true, what + ': counted; ' + result.awaiting + ' more approver(s) needed.');
        else if (result.ok) show(true, what + ': applied; task ' + (r ? r.taskId : '') + ' continues.');
        else show(false, 'Refused (' + result.error.code + '): ' + result.error.message);
        // The live stream will say the same; this only closes the gap if it lags.
        return resync();
      })
      .catch(function (e) { show(false, 'Could not reach the approver server: ' + e.message); });
  }

  function apply(list) {
    state.requests = list;
    renderList();
    // Keep the form the approver is filling in; rebuild only if the request came or went.
    var shown = $('detail').getAttribute('data-shown');
    var present = state.requests.some(function (x) { return x.requestId === state.selected; }) ? state.selected : '';
    if (shown !== present) renderDetail();
  }
  function resync() {
    return fetch('/api/requests', { credentials: 'same-origin' }).then(function (res) { return res.ok ? res.json().then(apply) : null; }).catch(function () {});
  }
  var events = new EventSource('/api/events');
  events.addEventListener('requests', function (e) {
    $('status').textContent = 'live';
    apply(JSON.parse(e.data));
  });
  events.addEventListener('error', function () { $('status').textContent = 'reconnecting…'; });
  setInterval(tick, 1000);
  document.addEventListener('keydown', function (e) {
    if (e.key === 'Enter' && e.target && e.target.getAttribute && e.target.getAttribute('data-request-id')) select(e.target.getAttribute('data-request-id'));
  });
})();
`;
