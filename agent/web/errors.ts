/**
 * The contract's custom errors as sentences a member reads, never a hex blob: the revert data a
 * wallet hands back is decoded against the ABI (selector → error and its arguments) and put into
 * words. An error without a sentence here is still named, in words ("EnergyAboveCap" → "Energy
 * above cap").
 */
import type { Interface } from 'ethers';

const when = (unix: unknown) => new Date(Number(unix) * 1000).toISOString().replace('T', ' ').slice(0, 16);

/** What to tell the member, per error name; a function where the error carries a figure. */
export const ERROR_SENTENCES: Record<string, string | ((args: readonly unknown[]) => string)> = {
  ZeroAmount: 'The amount must be more than zero.',
  AmountExceedsDeposit: 'You asked for more than your deposit holds.',
  NothingToWithdraw: 'There is nothing to withdraw: announce a withdrawal first, or wait for earnings.',
  WithdrawalNotReady: (a) =>
    `The withdrawal notice has not passed yet: you can withdraw from ${when(a[0])} UTC.`,
  TransferFailed: 'The contract could not send the ether to your account.',
  AlreadyRegistered: 'This account is already registered.',
  NotRegistered: 'This account is not registered: register it first.',
  NotAnEv: 'Only a registered EV can do this (register as an EV first).',
  NotAnHcs: 'Only a registered charging station can do this.',
  ZeroIdentityCommitment: 'The identity commitment is empty: give your identity reference.',
  InvalidLocation: 'The position is outside the world (latitude ±90°, longitude ±180°).',
  InvalidStatusTransition: 'The operator cannot move the member to that status from its present one.',
  SettlementWindowClosed: 'The settlement window of this session has closed.',
  EvNotVerified: 'The EV is not verified yet: an operator must verify it first.',
  HcsNotVerified: 'The station is not verified yet.',
  InsufficientDeposit: 'Your deposit does not cover this charge: deposit more first.',
  InvalidRating: 'A rating is 1 to 5 stars.',
  NotSettled: 'This session is not settled yet: rate it once its bill is on chain.',
  AlreadyRated: 'You have rated this session already.',
  NotSessionEv: 'Only the EV of this session can rate it.',
  TooManyOpenReservations: 'You have too many charges reserved and not yet settled: wait for one to settle.',
  NotReserved: 'This session was never reserved on chain.',
  AlreadySettled: 'This session is settled already.',
  AlreadyReleased: 'This reservation was released already.',
  AccessControlUnauthorizedAccount: 'This account may not do that (an operator’s action).',
};

/** "EnergyAboveCap" → "Energy above cap." */
export function nameToWords(name: string): string {
  const words = name.replace(/([a-z0-9])([A-Z])/g, '$1 $2').toLowerCase();
  return `${words.charAt(0).toUpperCase()}${words.slice(1)}.`;
}

/** Revert data (0x + selector + arguments) as a sentence; undefined when it is no error of this ABI. */
export function errorSentence(
  iface: Interface,
  data: string,
): { name: string; sentence: string } | undefined {
  let parsed: ReturnType<Interface['parseError']>;
  try {
    parsed = iface.parseError(data);
  } catch {
    return undefined;
  }
  if (!parsed) return undefined;
  const words = ERROR_SENTENCES[parsed.name];
  const sentence = typeof words === 'function' ? words(parsed.args) : (words ?? nameToWords(parsed.name));
  return { name: parsed.name, sentence };
}
