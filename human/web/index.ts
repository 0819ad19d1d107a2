/** The approver's web page, served by the process that holds the approver's key, and the read-only task view beside it. */
export { startApproverServer, type ApproverServer, type ApproverServerOptions } from './approver-server.ts';
export { statechartOf, summarize, type StatechartNode, type StatechartTransition, type TaskSummary, type TaskViewAgent, type TaskViewOptions } from './task-view.ts';
