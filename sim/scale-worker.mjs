// Worker-thread entry: tsx's loader is registered per thread, then the TypeScript worker runs.
import { register } from 'tsx/esm/api';

register();
await import('./scale-worker.ts');
