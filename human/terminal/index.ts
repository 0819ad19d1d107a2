export { formatDuration, renderSurface, runInteractiveApprover, summarize, type InteractiveApproverClient, type InteractiveApproverOptions } from './interactive-approve.ts';
