// The wallet section: the account as the contract has it, and the actions a member signs in
// their own wallet (register, deposit, announce a withdrawal, withdraw), each followed to its block.
import { $, api, explain, fail, row, sayer, state } from './api.js';
import { addr, el, ether, parseEther, utc } from './format.js';
import { runTransaction } from './wallet.js';

const ETH_DIGITS = 6;

export async function showWallet() {
  const box = $('#wallet-account');
  for (const form of document.querySelectorAll('.wallet-action')) form.hidden = !state.account;
  if (!state.account) {
    box.replaceChildren(
      el(
        'p',
        {},
        state.wallet
          ? 'Connect your wallet (top right) to see your account and act on it.'
          : 'No browser wallet was found: install one (any EIP-6963 wallet) to act from this page.',
      ),
    );
    return;
  }
  try {
    const a = await api('account', { address: state.account });
    state.accountInfo = a;
    box.replaceChildren(
      el(
        'dl',
        { class: 'totals', id: 'account-figures' },
        row('Account', addr(a.address)),
        row(
          'Member',
          a.role === 'none' ? 'not registered' : `${a.role.toUpperCase()}, ${a.status}`,
          'acct-member',
        ),
        row('Deposit', `${ether(a.depositWei, ETH_DIGITS)} ETH`, 'num acct-deposit'),
        a.reservedWei !== undefined && a.reservedWei !== '0'
          ? row('Reserved for charges', `${ether(a.reservedWei, ETH_DIGITS)} ETH`, 'num acct-reserved')
          : undefined,
        row(
          'Announced withdrawal',
          a.pendingWithdrawalWei === '0'
            ? 'none'
            : `${ether(a.pendingWithdrawalWei, ETH_DIGITS)} ETH from ${utc(a.withdrawableAt)} UTC`,
          'acct-pending',
        ),
        a.role === 'hcs'
          ? row('Earnings', `${ether(a.earningsWei, ETH_DIGITS)} ETH`, 'num acct-earnings')
          : undefined,
        row('In the wallet', `${ether(a.etherWei, ETH_DIGITS)} ETH`, 'num acct-ether'),
      ),
    );
  } catch (err) {
    fail(box, err);
  }
}

export async function walletAction(event) {
  event.preventDefault();
  const form = event.target;
  const fn = form.id.slice(2);
  const status = form.querySelector('.tx-status');
  const say = sayer(status);
  if (!state.wallet || !state.account) return say('failed', 'connect your wallet first.');
  try {
    const params = { fn, from: state.account };
    if (form.identity) params.identity = form.identity.value;
    if (form.amount) params.amountWei = parseEther(form.amount.value).toString();
    const call = await api('call', params);
    const button = form.querySelector('button');
    button.disabled = true;
    await runTransaction(state.wallet, call, say, explain);
    button.disabled = false;
    await showWallet();
  } catch (err) {
    say('failed', err.message);
  }
}
