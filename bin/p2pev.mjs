#!/usr/bin/env node
// Entry point of the `p2pev` command. The sources are TypeScript, run through tsx's loader
// so that a fresh `npm ci` is enough on a Pi (no build step, no compiler at run time).
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../agent/cli.ts');
await main(process.argv);
