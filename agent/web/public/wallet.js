// A browser wallet, where one is present: EIP-6963 discovery (several wallets announce
// themselves), falling back to the legacy window.ethereum (EIP-1193). The page never needs one.

const found = new Map();

/** Listens for wallet announcements and asks them to announce; returns the list so far. */
export function discoverWallets(onChange) {
  window.addEventListener('eip6963:announceProvider', (event) => {
    const { info, provider } = event.detail ?? {};
    if (!info?.uuid || !provider?.request) return;
    found.set(info.uuid, { name: info.name, provider });
    onChange([...found.values()]);
  });
  window.dispatchEvent(new Event('eip6963:requestProvider'));
  if (found.size === 0 && window.ethereum?.request) {
    found.set('legacy', { name: 'Browser wallet', provider: window.ethereum });
  }
  onChange([...found.values()]);
  return [...found.values()];
}

/** Asks the wallet for an account; resolves to the lowercase address. */
export async function connect(wallet) {
  const accounts = await wallet.provider.request({ method: 'eth_requestAccounts' });
  if (!accounts?.length) throw new Error('the wallet gave no account');
  return String(accounts[0]).toLowerCase();
}

/** Sends a prepared call ({ from, to, data, chainId }) through the wallet, on the right chain. */
export async function sendCall(wallet, call) {
  const want = `0x${Number(call.chainId).toString(16)}`;
  const have = await wallet.provider.request({ method: 'eth_chainId' });
  if (String(have).toLowerCase() !== want) {
    await wallet.provider.request({ method: 'wallet_switchEthereumChain', params: [{ chainId: want }] });
  }
  return wallet.provider.request({
    method: 'eth_sendTransaction',
    params: [{ from: call.from, to: call.to, data: call.data }],
  });
}
