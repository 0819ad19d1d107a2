import { z } from 'zod';
import { defineTool } from '../sandbox/tool.ts';

/** The same trivial tool at each isolation level, to measure what dispatch costs per call. */
const echo = (isolation: 'inline' | 'thread' | 'bwrap') =>
  defineTool({ name: `echo_${isolation}`, description: 'echoes', input: z.object({ n: z.number() }), output: z.object({ n: z.number() }), isolation, run: async ({ n }) => ({ n }) });

export const echoInline = echo('inline');
export const echoThread = echo('thread');
export const echoBwrap = echo('bwrap');
