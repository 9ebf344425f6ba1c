/**
 * Network: the simulated Wi-Fi radio. In setup mode the device is an access point named after
 * its serial; configured, it joins the network from its settings. The simulation maps both to the
 * loopback address the program was given (`--bind`), and can be told which networks exist and
 * their passphrases (`--wifi-networks`), so a wrong passphrase is an error like on the real chip.
 */
export type NetworkMode = 'access-point' | 'joined' | 'down';

export interface NetworkState {
  mode: NetworkMode;
  ssid: string | undefined;
  /** The address the device answers on. */
  address: string | undefined;
  error: string | undefined;
}

export class Network {
  #state: NetworkState = { mode: 'down', ssid: undefined, address: undefined, error: undefined };

  constructor(
    private readonly opts: {
      serial: string;
      /** The simulated radio's address (a loopback address here). */
      address: string;
      /** Networks in range with their passphrases; absent: any network joins. */
      inRange?: ReadonlyMap<string, string>;
    },
  ) {}

  get state(): NetworkState {
    return { ...this.#state };
  }

  /** Setup mode: an open-to-join access point `GATE-<serial>`. */
  startAccessPoint(): NetworkState {
    this.#state = { mode: 'access-point', ssid: `GATE-${this.opts.serial}`, address: this.opts.address, error: undefined };
    return this.state;
  }

  join(ssid: string, password: string): NetworkState {
    const inRange = this.opts.inRange;
    if (inRange !== undefined && !inRange.has(ssid)) {
      this.#state = { mode: 'down', ssid, address: undefined, error: `network '${ssid}' is not in range` };
    } else if (inRange !== undefined && inRange.get(ssid) !== password) {
      this.#state = { mode: 'down', ssid, address: undefined, error: `the passphrase for '${ssid}' was refused` };
    } else {
      this.#state = { mode: 'joined', ssid, address: this.opts.address, error: undefined };
    }
    return this.state;
  }

  stop(): void {
    this.#state = { mode: 'down', ssid: undefined, address: undefined, error: undefined };
  }
}
