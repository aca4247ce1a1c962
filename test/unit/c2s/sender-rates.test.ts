import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SenderRates, type HeavySender } from '../../../src/c2s/sender-rates.ts';

const ON: HeavySender = { factor: 8, minBytes: 500 };
const OFF: HeavySender = { factor: 0, minBytes: 500 };
const HIGH_FLOOR: HeavySender = { factor: 8, minBytes: 100_000 };

/** A SenderRates with manual windows, a flooder and a quiet account, after one window in which the flooder read 50 times as much. */
function afterFlood() {
  let heavyWindows = 0;
  const rates = new SenderRates({ inc: () => heavyWindows++ }, 0);
  const flooder = rates.meter('mallory@localhost');
  const quiet = rates.meter('alice@localhost');
  rates.read(flooder, 5000, ON);
  rates.read(quiet, 100, ON);
  rates.tick();
  return { rates, flooder, quiet, windows: () => heavyWindows };
}

test('each session judges the account by its own listener\'s rule, whichever of its sessions reads first in the window', () => {
  for (const order of [[OFF, ON, HIGH_FLOOR], [ON, HIGH_FLOOR, OFF], [HIGH_FLOOR, OFF, ON]]) {
    const { rates, flooder, quiet, windows } = afterFlood();
    const verdicts = new Map<HeavySender, boolean>();
    for (const rule of order) verdicts.set(rule, rates.read(flooder, 10, rule));
    assert.equal(verdicts.get(ON), true, 'heavy where the rule is on');
    assert.equal(verdicts.get(OFF), false, 'never heavy where the rule is off');
    assert.equal(verdicts.get(HIGH_FLOOR), false, 'not heavy below that listener\'s floor');
    assert.equal(rates.read(quiet, 10, ON), false, 'the quiet account is not heavy');
    // The window counts once for the account, however many of its sessions found it heavy.
    assert.equal(rates.read(flooder, 10, ON), true);
    assert.equal(windows(), 1);
    rates.stop();
  }
});

test('an account that stops flooding is no longer heavy in the next window, and is counted again when it floods again', () => {
  const { rates, flooder, quiet, windows } = afterFlood();
  assert.equal(rates.read(flooder, 10, ON), true);
  rates.read(quiet, 100, ON);
  rates.tick();
  assert.equal(rates.read(flooder, 5000, ON), false, 'the window before it read only 10 bytes');
  rates.read(quiet, 100, ON);
  rates.tick();
  assert.equal(rates.read(flooder, 10, ON), true);
  assert.equal(windows(), 2);
  rates.stop();
});

test('a sender alone is never heavy, nor are equal senders', () => {
  const rates = new SenderRates(undefined, 0);
  const a = rates.meter('a@localhost');
  rates.read(a, 50_000, ON);
  rates.tick();
  assert.equal(rates.read(a, 50_000, ON), false, 'nobody to be unfair to');
  const b = rates.meter('b@localhost');
  rates.read(b, 50_000, ON);
  rates.tick();
  assert.equal(rates.read(a, 10, ON), false);
  assert.equal(rates.read(b, 10, ON), false);
  rates.stop();
});
