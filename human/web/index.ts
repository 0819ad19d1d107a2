/** The approver's web page, served by the process that holds the approver's key. */
export { startApproverServer, type ApproverServer, type ApproverServerOptions } from './approver-server.ts';
