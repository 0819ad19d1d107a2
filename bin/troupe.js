#!/usr/bin/env node
// The `troupe` command. troupe ships TypeScript and runs it through tsx, so agents and config
// written in TypeScript load without a build step.
import { register } from 'tsx/esm/api';

register();
// `troupe tasks | head` closes our stdout early: that is the reader's choice, not an error.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}
const { main } = await import('../cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
