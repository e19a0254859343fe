/**
 * The station side of a simulated charging cable: what a simulated charger offers, and whether an
 * EV is plugged into it. sim/world.ts lets current flow through both meters only while the EV is
 * plugged in, switched on, and the charger offers power.
 */
export interface SimOutlet {
  /** Power the charger lets through now, kW (0: it offers nothing). */
  readonly offeringKw: number;
  /** Set by the world: an EV is plugged in and wants to charge. */
  evPlugged: boolean;
}
