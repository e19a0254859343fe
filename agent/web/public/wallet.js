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

/** The revert data (0x + selector …) inside an EIP-1193 error, wherever the wallet put it. */
export function revertData(err) {
  const seen = new Set();
  const walk = (v, depth) => {
    if (v === undefined || v === null || depth > 4 || seen.has(v)) return undefined;
    if (typeof v === 'string') return /^0x[0-9a-fA-F]{8,}$/.test(v) ? v : undefined;
    if (typeof v !== 'object') return undefined;
    seen.add(v);
    for (const k of ['data', 'error', 'cause', 'originalError']) {
      const found = walk(v[k], depth + 1);
      if (found) return found;
    }
    return undefined;
  };
  return walk(err, 0) ?? /(0x[0-9a-fA-F]{8,})/.exec(String(err?.message ?? ''))?.[1];
}

/**
 * A wallet action from start to its block: simulated first (a refusal is told as a sentence
 * before anything is signed), sent, then followed to its receipt. `say(state, text)`: state is
 * 'pending', 'confirmed' or 'failed'. `explain(data)` turns revert data into a sentence.
 */
export async function runTransaction(wallet, call, say, explain) {
  const why = async (err) => {
    const data = revertData(err);
    if (data) return explain(data);
    if (err?.code === 4001) return 'You declined it in your wallet.';
    return err?.message ?? String(err);
  };
  try {
    const want = `0x${Number(call.chainId).toString(16)}`;
    say('pending', 'waiting for your wallet…');
    const have = await wallet.provider.request({ method: 'eth_chainId' });
    if (String(have).toLowerCase() !== want)
      await wallet.provider.request({ method: 'wallet_switchEthereumChain', params: [{ chainId: want }] });
    const tx = {
      from: call.from,
      to: call.to,
      data: call.data,
      ...(call.value ? { value: call.value } : {}),
    };
    try {
      await wallet.provider.request({ method: 'eth_call', params: [tx, 'latest'] });
    } catch (err) {
      say('failed', `not sent. ${await why(err)}`);
      return undefined;
    }
    const hash = await wallet.provider.request({ method: 'eth_sendTransaction', params: [tx] });
    say('pending', `sent (${String(hash).slice(0, 10)}…), waiting for its block…`);
    for (;;) {
      const receipt = await wallet.provider.request({ method: 'eth_getTransactionReceipt', params: [hash] });
      if (receipt) {
        if (receipt.status === '0x1' || receipt.status === 1) {
          say('confirmed', `in block ${Number(receipt.blockNumber)}.`);
          return hash;
        }
        say('failed', 'the transaction was reverted on chain.');
        return undefined;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  } catch (err) {
    say('failed', await why(err));
    return undefined;
  }
}
