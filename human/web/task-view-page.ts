/**
 * The task view's pages: one HTML shell for the list (`/tasks`) and for one task
 * (`/tasks/<taskId>`), with CSS and JS served as files so the approver server's CSP can forbid
 * inline code. No framework, no external assets; task data is only ever set through `textContent`.
 */
import { DOM_JS, escapeAttr } from './page.ts';

/** The page shell: the list of tasks, or one task when `taskId` is given. */
export function renderTaskViewPage({ taskId }: { taskId?: string }): string {
  const main = taskId
    ? `<main class="task">
  <section id="summary-pane" aria-label="Task"><h2>Task <span id="task-id">${escapeAttr(taskId)}</span></h2><dl id="summary"><dt>Status</dt><dd id="task-status">loading…</dd></dl></section>
  <section id="chart-pane" aria-label="Statechart"><h2>Statechart <span id="chart-note" class="hint"></span></h2><div id="chart"><p class="hint">loading…</p></div></section>
  <section id="timeline-pane" aria-label="Timeline"><h2>Timeline <span id="timeline-count" class="hint"></span></h2><ol id="timeline"></ol></section>
</main>`
    : `<main class="list">
  <section aria-label="Tasks">
    <h2>Tasks <span id="count" class="hint"></span></h2>
    <p id="empty" class="hint" hidden>No tasks yet. Submit one (<code>npx troupe submit &lt;agent&gt; --input '{…}'</code>) and it appears here.</p>
    <table id="tasks"><thead><tr><th>Task</th><th>Agent</th><th>Status</th><th>State</th><th>Budget used</th><th>Pending approval</th><th>Updated</th></tr></thead><tbody></tbody></table>
  </section>
</main>`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="troupe-task" content="${escapeAttr(taskId ?? '')}">
<title>troupe · ${taskId ? `task ${escapeAttr(taskId)}` : 'tasks'}</title>
<link rel="stylesheet" href="/task-view.css">
<script src="/task-view.js" defer></script>
</head>
<body class="tv">
<header><h1>troupe tasks</h1><nav>${taskId ? '<a class="nav" href="/tasks">All tasks</a>' : ''}<a class="nav" href="/">Approvals</a></nav><span id="status" class="status">connecting…</span></header>
${main}
</body>
</html>
`;
}

/** Scoped to `body.tv`, except the header link rule the approver page borrows. */
export const TASK_VIEW_CSS = `
header a.nav{color:#cfe0ff;margin-left:1rem;font-size:.9rem;text-decoration:none}
header a.nav:hover{text-decoration:underline}
body.tv *{box-sizing:border-box}
body.tv{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d2330;background:#f4f5f7}
body.tv header{display:flex;align-items:baseline;gap:1rem;padding:.7rem 1.2rem;background:#1d2330;color:#fff}
body.tv h1{font-size:1.1rem;margin:0}
body.tv h2{font-size:1rem;margin:0 0 .6rem}
body.tv .status{font-size:.85rem;opacity:.8;margin-left:auto}
body.tv main{display:grid;gap:1rem;padding:1rem 1.2rem;align-items:start}
body.tv main.task{grid-template-columns:minmax(260px,360px) 1fr}
body.tv #timeline-pane{grid-column:1 / -1}
body.tv section{background:#fff;border:1px solid #dde0e6;border-radius:8px;padding:1rem;min-width:0}
body.tv .hint{color:#5b6475;font-weight:normal}
body.tv table{border-collapse:collapse;width:100%;font-size:.9rem}
body.tv th,body.tv td{text-align:left;padding:.4rem .6rem;border-bottom:1px solid #e6e8ec;vertical-align:top}
body.tv th{color:#5b6475;font-weight:600}
body.tv tr.fresh td{animation:tvflash 1.2s ease-out}
@keyframes tvflash{from{background:#fff6c8}to{background:transparent}}
body.tv dl{display:grid;grid-template-columns:max-content 1fr;gap:.35rem 1rem;margin:0}
body.tv dt{color:#5b6475}
body.tv dd{margin:0;min-width:0;overflow-wrap:anywhere}
body.tv pre{margin:0;padding:.4rem;background:#f6f7f9;border:1px solid #e3e6eb;border-radius:6px;overflow:auto;max-height:12rem;font-size:.82rem}
body.tv .badge{display:inline-block;padding:0 .45rem;border-radius:999px;font-size:.8rem;background:#e8eaee}
body.tv .badge.running{background:#dbe7fb;color:#1a4a9c}
body.tv .badge.parked{background:#fff1cc;color:#6b4e00}
body.tv .badge.done{background:#dcf3e3;color:#17622f}
body.tv .badge.failed{background:#fbe0de;color:#8c1d15}
body.tv .state{border:1.5px solid #aab2c0;border-radius:10px;padding:.45rem .6rem;background:#fff;min-width:9rem;transition:background .3s,border-color .3s}
body.tv .state.root{border-style:solid;background:#fafbfc}
body.tv .state.final{border-width:3px;border-style:double}
body.tv .state.active{border-color:#6d8fd1;background:#f3f7ff}
body.tv .state.current{border-color:#1a4a9c;background:#dbe7fb;box-shadow:0 0 0 3px #9db7ea}
body.tv .state.current.final{background:#dcf3e3;border-color:#17622f;box-shadow:0 0 0 3px #9fd8b1}
body.tv .state-head{display:flex;gap:.4rem;align-items:baseline;flex-wrap:wrap}
body.tv .state-name{font-weight:600}
body.tv .tag{font-size:.72rem;color:#5b6475;border:1px solid #d5d9e0;border-radius:4px;padding:0 .3rem}
body.tv .tag.here{background:#1a4a9c;color:#fff;border-color:#1a4a9c}
body.tv ul.transitions{list-style:none;margin:.25rem 0 0;padding:0;font-size:.8rem;color:#3b4354}
body.tv ul.transitions li{font-family:ui-monospace,Menlo,Consolas,monospace;white-space:nowrap}
body.tv .children{display:flex;flex-wrap:wrap;gap:.6rem;margin-top:.5rem;align-items:flex-start}
body.tv .children.parallel > .state{border-style:dashed}
body.tv ol#timeline{margin:0;padding-left:2.2rem;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.82rem;max-height:28rem;overflow:auto}
body.tv ol#timeline li{padding:.1rem 0;white-space:pre-wrap;overflow-wrap:anywhere}
body.tv ol#timeline time{color:#5b6475;margin-right:.6rem}
body.tv ol#timeline li.ev-failed{color:#8c1d15}
body.tv ol#timeline li.ev-done{color:#17622f}
body.tv ol#timeline li.ev-state{font-weight:600}
@media (max-width:860px){body.tv main.task{grid-template-columns:1fr}}
`;

export const TASK_VIEW_JS = String.raw`'use strict';
(function () {
  var taskId = document.querySelector('meta[name="troupe-task"]').content;
  var $ = function (id) { return document.getElementById(id); };
  ${DOM_JS}
  function ago(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + ' s ago';
    if (s < 3600) return Math.floor(s / 60) + ' min ago';
    return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min ago';
  }
  function budget(t) {
    var u = t.usage;
    var tokens = u ? u.inputTokens + u.outputTokens : 0;
    return '$' + (u ? u.costUsd : 0).toFixed(4) + ' · ' + tokens.toLocaleString('en') + ' tokens · step ' + t.step;
  }
  function approval(t) { return t.pending ? t.pending.what + ' — ' + t.pending.reason : ''; }
  function live(source) {
    source.addEventListener('open', function () { $('status').textContent = 'live'; });
    source.addEventListener('error', function () { $('status').textContent = 'reconnecting…'; });
  }
  function tick() {
    document.querySelectorAll('[data-updated]').forEach(function (n) { n.textContent = ago(Date.now() - Number(n.getAttribute('data-updated'))); });
  }
  setInterval(tick, 1000);

  // ---- /tasks ----
  function listPage() {
    var tasks = new Map();
    var seen = new Set();
    function merge(t) {
      var old = tasks.get(t.taskId);
      if (!old || t.revision >= old.revision) tasks.set(t.taskId, t);
    }
    function render() {
      var rows = Array.from(tasks.values()).sort(function (a, b) { return b.updatedAt - a.updatedAt; });
      var body = document.querySelector('#tasks tbody');
      body.replaceChildren();
      rows.forEach(function (t) {
        var tr = el('tr', { 'data-task-id': t.taskId, 'data-status': t.status, 'data-state': t.state },
          el('td', {}, el('a', { href: '/tasks/' + encodeURIComponent(t.taskId), text: t.taskId })),
          el('td', { text: t.agent }),
          el('td', {}, el('span', { class: 'badge ' + t.status, text: t.status })),
          el('td', { class: 'state-cell', text: t.state }),
          el('td', { text: budget(t) }),
          el('td', {}, t.pending ? el('a', { href: '/', text: approval(t) }) : ''),
          el('td', { 'data-updated': String(t.updatedAt), text: ago(Date.now() - t.updatedAt) }));
        if (seen.size && !seen.has(t.taskId + ':' + t.revision)) tr.className = 'fresh';
        body.append(tr);
      });
      seen = new Set(rows.map(function (t) { return t.taskId + ':' + t.revision; }));
      $('count').textContent = rows.length ? '(' + rows.length + ')' : '';
      $('empty').hidden = rows.length > 0;
      $('tasks').hidden = rows.length === 0;
    }
    var source = new EventSource('/api/stream/tasks');
    live(source);
    source.addEventListener('tasks', function (e) {
      var list = JSON.parse(e.data);
      var present = new Set(list.map(function (t) { return t.taskId; }));
      tasks.forEach(function (_t, id) { if (!present.has(id)) tasks.delete(id); });
      list.forEach(merge);
      render();
    });
    source.addEventListener('task', function (e) { merge(JSON.parse(e.data)); render(); });
    source.addEventListener('removed', function (e) { tasks.delete(JSON.parse(e.data).taskId); render(); });
    render();
  }

  // ---- /tasks/<taskId> ----
  function taskPage() {
    var current = null;
    // The state of the task's last state event: every state change is one, in order, so the
    // highlight follows even a state the task passes without a snapshot write of its own.
    var eventState = null;
    var chartFor = null;
    var loading = null;
    var count = 0;

    function renderState(n, parent) {
      var box = el('div', { class: 'state ' + n.type + (parent ? '' : ' root'), 'data-path': n.path, 'data-key': n.key });
      var head = el('div', { class: 'state-head' }, el('span', { class: 'state-name', text: parent ? n.key : 'machine ' + n.key }));
      if (parent && parent.initial === n.key) head.append(el('span', { class: 'tag', text: 'initial' }));
      if (n.type === 'final' || n.type === 'parallel') head.append(el('span', { class: 'tag', text: n.type }));
      n.invokes.forEach(function (src) { head.append(el('span', { class: 'tag', text: 'invokes ' + src })); });
      box.append(head);
      if (n.transitions.length) {
        var ul = el('ul', { class: 'transitions' });
        n.transitions.forEach(function (t) {
          ul.append(el('li', { text: t.event + (t.guard ? ' [' + t.guard + ']' : '') + ' → ' + (t.targets.length ? t.targets.join(', ') : '(stays)') }));
        });
        box.append(ul);
      }
      if (n.states.length) {
        var kids = el('div', { class: 'children' + (n.type === 'parallel' ? ' parallel' : '') });
        n.states.forEach(function (c) { kids.append(renderState(c, n)); });
        box.append(kids);
      }
      return box;
    }
    function highlight() {
      document.querySelectorAll('.state.active, .state.current').forEach(function (n) { n.classList.remove('active', 'current'); });
      document.querySelectorAll('.tag.here').forEach(function (n) { n.remove(); });
      var state = eventState || (current && current.state);
      if (!current || !state) return;
      state.split(',').forEach(function (value) {
        var parts = value.split('.');
        for (var i = 1; i <= parts.length; i++) {
          var path = parts.slice(0, i).join('.');
          var box = document.querySelector('.state[data-path="' + CSS.escape(path) + '"]');
          if (!box) continue;
          box.classList.add(i === parts.length ? 'current' : 'active');
          if (i === parts.length) box.querySelector('.state-head').append(el('span', { class: 'tag here', text: current.status === 'parked' ? 'parked here' : current.status === 'running' ? 'now' : current.status }));
        }
      });
      var root = document.querySelector('.state.root');
      if (root) root.classList.add('active');
    }
    function row(dl, label, value, id) {
      if (value === null || value === undefined || value === '') return;
      var dd = el('dd', id ? { id: id } : {}, value);
      dl.append(el('dt', { text: label }), dd);
    }
    function renderSummary() {
      var t = current;
      var dl = $('summary');
      dl.replaceChildren();
      if (!t) { row(dl, 'Status', 'no such task yet; this page follows it once it starts', 'task-status'); return; }
      row(dl, 'Agent', t.agent);
      row(dl, 'Status', el('span', { class: 'badge ' + t.status, text: t.status }), 'task-status');
      row(dl, 'State', t.state || '(none)', 'task-state');
      row(dl, 'Budget used', budget(t), 'task-budget');
      if (t.usage) row(dl, 'Calls', t.usage.modelCalls + ' model, ' + t.usage.toolCalls + ' tool');
      row(dl, 'Pending approval', t.pending ? el('span', {}, approval(t) + ' ', el('a', { href: '/', text: 'decide on the approver page' })) : null, 'task-pending');
      row(dl, 'Waiting for', t.waiting);
      row(dl, 'Delegated by', t.parent ? el('a', { href: '/tasks/' + encodeURIComponent(t.parent), text: t.parent }) : null, 'task-parent');
      row(dl, 'Delegated to', t.children && t.children.length ? el('ul', { class: 'children' }, ...t.children.map(function (c) { return el('li', {}, el('a', { href: '/tasks/' + encodeURIComponent(c.taskId), text: c.taskId }), ' (' + c.agent + ')'); })) : null, 'task-children');
      if (t.outcome) row(dl, t.outcome.status === 'done' ? 'Output' : 'Error', el('pre', { text: t.outcome.status === 'done' ? JSON.stringify(t.outcome.output, null, 2) : t.outcome.error.code + ': ' + t.outcome.error.message }), 'task-outcome');
      row(dl, 'Created', new Date(t.createdAt).toLocaleString());
      row(dl, 'Updated', el('span', { 'data-updated': String(t.updatedAt), text: ago(Date.now() - t.updatedAt) }));
    }
    function load() {
      if (loading) return loading;
      loading = fetch('/api/tasks/' + encodeURIComponent(taskId), { credentials: 'same-origin' })
        .then(function (res) { return res.ok ? res.json() : null; })
        .then(function (d) {
          if (!d) return;
          if (!current || d.summary.revision > current.revision) current = d.summary;
          chartFor = d.envelope.agent;
          $('chart-note').textContent = d.versionNote || '';
          $('chart').replaceChildren(d.statechart ? renderState(d.statechart, null) : el('p', { class: 'hint', text: 'No machine for agent ' + d.envelope.agent + ' here: this server only draws the agents it was given.' }));
          renderSummary();
          highlight();
        })
        .catch(function () {})
        .finally(function () { loading = null; });
      return loading;
    }
    function apply(t) {
      if (current && t.revision < current.revision) return;
      current = t;
      renderSummary();
      if (chartFor !== t.agent) load(); else highlight();
    }
    var source = new EventSource('/api/stream/tasks/' + encodeURIComponent(taskId));
    live(source);
    // The stream opens with the task as it stands (or 'missing'); its first summary loads the statechart.
    source.addEventListener('task', function (e) { apply(JSON.parse(e.data)); });
    source.addEventListener('missing', function () {
      if (current) return;
      renderSummary();
      $('chart').replaceChildren(el('p', { class: 'hint', text: 'The statechart appears when the task starts.' }));
    });
    source.addEventListener('reset', function () { $('timeline').replaceChildren(); count = 0; eventState = null; $('timeline-count').textContent = ''; });
    source.addEventListener('timeline', function (e) {
      var entry = JSON.parse(e.data);
      var at = new Date(entry.at);
      var ol = $('timeline');
      var stick = ol.scrollTop + ol.clientHeight >= ol.scrollHeight - 4;
      ol.append(el('li', { class: 'ev-' + entry.type, 'data-type': entry.type }, el('time', { datetime: at.toISOString(), text: at.toLocaleTimeString('en-GB') + '.' + String(at.getMilliseconds()).padStart(3, '0') }), entry.line));
      if (stick) ol.scrollTop = ol.scrollHeight;
      if (entry.state) { eventState = entry.state; highlight(); }
      count++;
      $('timeline-count').textContent = '(' + count + ' events)';
    });
  }

  if (taskId) taskPage(); else listPage();
})();
`;
