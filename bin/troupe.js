#!/usr/bin/env node
// The `troupe` command. troupe ships TypeScript and runs it through tsx, so agents and config
// written in TypeScript load without a build step.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
