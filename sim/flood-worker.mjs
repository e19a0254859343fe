// Worker-thread entry of a flood publisher (sim/flood.ts): tsx's loader is registered per thread,
// then the TypeScript module runs its share of the flood.
import { register } from 'tsx/esm/api';

register();
await import('./flood.ts');
