/** Tools that ship with troupe. */
export { runJavaScriptTool } from './run-javascript.ts';
