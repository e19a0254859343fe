/**
 * The serial ports present, with adapter names, for `p2pev diag ports`. Read straight from sysfs
 * (and /dev/serial/by-id) because serialport's list() shells out to udevadm, which small images
 * and containers often lack; serialport's list() remains the fallback off Linux.
 */
import { existsSync, readdirSync, readFileSync, readlinkSync, realpathSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

export interface SerialPortInfo {
  /** /dev/ttyUSB0 */
  path: string;
  /** Stable names in /dev/serial/by-id pointing at it (use these in agent.config.json). */
  byId: string[];
  driver?: string;
  subsystem?: string;
  vendorId?: string;
  productId?: string;
  manufacturer?: string;
  product?: string;
  serialNumber?: string;
}

export interface PortScanRoots {
  sys?: string;
  dev?: string;
}

const readText = (p: string): string | undefined => {
  try {
    return readFileSync(p, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
};

const linkName = (p: string): string | undefined => {
  try {
    return basename(readlinkSync(p));
  } catch {
    return undefined;
  }
};

/** Walks up from a tty's device to the USB device that carries idVendor/idProduct. */
function usbAttributes(deviceDir: string): Partial<SerialPortInfo> {
  let dir = deviceDir;
  for (let i = 0; i < 6 && dir !== '/'; i++, dir = dirname(dir)) {
    if (existsSync(join(dir, 'idVendor'))) {
      const info: Partial<SerialPortInfo> = {};
      const put = (key: keyof SerialPortInfo, file: string) => {
        const v = readText(join(dir, file));
        if (v) (info as Record<string, string>)[key] = v;
      };
      put('vendorId', 'idVendor');
      put('productId', 'idProduct');
      put('manufacturer', 'manufacturer');
      put('product', 'product');
      put('serialNumber', 'serial');
      return info;
    }
  }
  return {};
}

export function scanSysfsPorts(roots: PortScanRoots = {}): SerialPortInfo[] {
  const sys = roots.sys ?? '/sys';
  const dev = roots.dev ?? '/dev';
  const ttyDir = join(sys, 'class', 'tty');
  if (!existsSync(ttyDir)) return [];
  const byIdDir = join(dev, 'serial', 'by-id');
  const byId = new Map<string, string[]>();
  if (existsSync(byIdDir)) {
    for (const name of readdirSync(byIdDir)) {
      const target = linkName(join(byIdDir, name));
      if (target) byId.set(target, [...(byId.get(target) ?? []), join(byIdDir, name)]);
    }
  }
  const ports: SerialPortInfo[] = [];
  for (const name of readdirSync(ttyDir).sort()) {
    const deviceLink = join(ttyDir, name, 'device');
    if (!existsSync(deviceLink)) continue; // virtual consoles and ptys have no device
    let deviceDir: string;
    try {
      deviceDir = realpathSync(deviceLink);
    } catch {
      deviceDir = resolve(ttyDir, name, readlinkSync(deviceLink));
    }
    const driver = linkName(join(deviceLink, 'driver'));
    const subsystem = linkName(join(deviceLink, 'subsystem'));
    // The kernel registers ttyS0..31 for 8250 UARTs that may not exist; a real one has a port type.
    if (driver === 'serial8250' || (subsystem === 'platform' && name.startsWith('ttyS'))) {
      const type = readText(join(ttyDir, name, 'type'));
      if (!type || type === '0') continue;
    }
    ports.push({
      path: join(dev, name),
      byId: byId.get(name) ?? [],
      ...(driver ? { driver } : {}),
      ...(subsystem ? { subsystem } : {}),
      ...usbAttributes(deviceDir),
    });
  }
  return ports;
}

export async function listSerialPorts(roots: PortScanRoots = {}): Promise<SerialPortInfo[]> {
  if (existsSync(join(roots.sys ?? '/sys', 'class', 'tty'))) return scanSysfsPorts(roots);
  const { SerialPort } = await import('serialport');
  const list = await SerialPort.list();
  return list.map((p) => ({
    path: p.path,
    byId: p.pnpId ? [p.pnpId] : [],
    ...(p.vendorId ? { vendorId: p.vendorId } : {}),
    ...(p.productId ? { productId: p.productId } : {}),
    ...(p.manufacturer ? { manufacturer: p.manufacturer } : {}),
    ...(p.serialNumber ? { serialNumber: p.serialNumber } : {}),
  }));
}
