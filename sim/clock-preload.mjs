// Loaded into a chaos run's agents (node --import): their wall clock can be stepped from outside,
// as NTP steps a Raspberry Pi's clock after boot. The offset (ms) is read from the file named by
// P2PEV_SIM_CLOCK_FILE at start and on every SIGUSR2. Only Date.now moves; monotonic time does not.
import { readFileSync } from 'node:fs';

const file = process.env.P2PEV_SIM_CLOCK_FILE;
if (file) {
  const realNow = Date.now.bind(Date);
  let offset = 0;
  const load = () => {
    try {
      offset = Number(readFileSync(file, 'utf8')) || 0;
    } catch {
      offset = 0;
    }
  };
  load();
  Date.now = () => realNow() + offset;
  process.on('SIGUSR2', load);
}
