export interface CommandEntry {
  name: string;
  module: string;
  register: string;
  description: string;
}
export declare const COMMANDS: CommandEntry[];
