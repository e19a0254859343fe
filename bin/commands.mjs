// The table of `p2pev`'s top-level commands (bin/p2pev.mjs loads only the one called).

/**
 * Every top-level command: its name, what `p2pev --help` says of it, and the module (without
 * extension, from the package root) whose exported `register` function adds it with its options.
 * One module may register several commands; test/cli-table.test.ts checks this table against them.
 */
export const COMMANDS = [
  {
    name: 'run',
    module: 'agent/commands',
    register: 'registerAgentCommands',
    description: 'Run one agent (ev, hcs or edge) from its config, until SIGINT/SIGTERM',
  },
  {
    name: 'keys',
    module: 'agent/commands',
    register: 'registerAgentCommands',
    description: 'Device keys in an encrypted keystore (mode 0600)',
  },
  {
    name: 'register',
    module: 'agent/commands',
    register: 'registerAgentCommands',
    description:
      "Register this device on the chain with its role and profile (an operator's check then verifies it)",
  },
  {
    name: 'config',
    module: 'agent/config-cli',
    register: 'registerConfigCommands',
    description: 'Write a complete, commented start configuration for a role, or check one',
  },
  {
    name: 'doctor',
    module: 'agent/ops/commands',
    register: 'registerOpsCommands',
    description:
      'Check an installed device end to end (config, keystore, meter, charger, broker, chain, registration, disk, clock) and say what to fix',
  },
  {
    name: 'status',
    module: 'agent/ops/commands',
    register: 'registerOpsCommands',
    description: 'What the running agent is doing, from its local control port (GET /status)',
  },
  {
    name: 'control',
    module: 'agent/ops/commands',
    register: 'registerOpsCommands',
    description:
      'A control action on the running agent (POST /<action>, e.g. charge \'{"targetWh":2000}\' or stop), with the token from <dataDir>/control.token',
  },
  {
    name: 'sessions',
    module: 'agent/ops/commands',
    register: 'registerOpsCommands',
    description: "This device's sessions, from its journal",
  },
  {
    name: 'web',
    module: 'agent/web/cli',
    register: 'registerWebCommands',
    description: "Serve the members' page (stations, sessions, statements, ratings) for a deployment",
  },
  {
    name: 'chain',
    module: 'contracts/cli',
    register: 'registerChainCommands',
    description: 'Deploy the settlement contract and show a deployment',
  },
  {
    name: 'diag',
    module: 'drivers/cli',
    register: 'registerDiagCommands',
    description: 'Field diagnostics of Modbus meters over serial or TCP',
  },
  {
    name: 'msg',
    module: 'protocol/cli',
    register: 'registerMsgCommands',
    description: 'Encode and decode wire messages (field diagnostics of captured traffic)',
  },
  {
    name: 'sim',
    module: 'sim/cli',
    register: 'registerSimCommands',
    description:
      "Run the paper's experiment: anvil, a broker, 2 EVs, 2 HCSs and an edge as real agents; prints the sessions table",
  },
];
