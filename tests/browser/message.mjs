// A real browser softphone: JsSIP (bundled for the browser with esbuild) in headless Chromium,
// driven by playwright-core. It registers as alice with the example proxy over SIP over
// WebSocket (RFC 7118), sends a MESSAGE to bob (the `ua` example, over UDP) and expects 200,
// prints "ready", then waits for a MESSAGE from another `ua` (delivered over alice's WebSocket
// flow: her Contact has an .invalid host, as browsers send it).
// Usage: node message.mjs CHROMIUM JSSIP_BUNDLE ws://HOST:PORT EXPECTED_TEXT
import { chromium } from 'playwright-core';

const [executablePath, bundle, url, expected] = process.argv.slice(2);
const fail = async (browser, why) => {
  console.error(`browser: FAILED: ${why}`);
  if (browser) await browser.close();
  process.exit(1);
};
const browser = await chromium.launch({
  executablePath,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = await browser.newPage();
page.on('console', (m) => console.log(`browser console: ${m.text()}`));
page.on('pageerror', (e) => console.log(`browser page error: ${e.message}`));
await page.setContent('<!doctype html><title>JsSIP</title><p>softphone</p>');
await page.addScriptTag({ path: bundle });
console.log(`browser: ${await browser.version()} with JsSIP ${await page.evaluate(() => JsSIP.version)}`);
await page.evaluate((wsUrl) => {
  window.log = [];
  const ua = new JsSIP.UA({
    sockets: [new JsSIP.WebSocketInterface(wsUrl)],
    uri: 'sip:alice@example.com',
    register: true,
    register_expires: 300,
    session_timers: false,
    user_agent: 'JsSIP-chromium-test',
  });
  window.ua = ua;
  ua.on('registrationFailed', (e) => window.log.push(`registration failed: ${e.cause}`));
  ua.on('newMessage', (e) => {
    if (e.originator === 'remote') window.log.push(`message: ${e.request.body}`);
  });
  ua.on('registered', () => {
    window.log.push('registered');
    ua.sendMessage('sip:bob@example.com', 'hello bob from Chromium', {
      eventHandlers: {
        succeeded: (ev) => window.log.push(`sent: ${ev.response.status_code}`),
        failed: (ev) => window.log.push(`send failed: ${ev.cause}`),
      },
    });
  });
  ua.start();
}, url);
const waitLog = async (pred, what, ms) => {
  try {
    await page.waitForFunction((p) => window.log.some((l) => l.startsWith(p)), pred, { timeout: ms });
  } catch {
    await fail(browser, `${what}; log: ${JSON.stringify(await page.evaluate(() => window.log))}`);
  }
};
await waitLog('registered', 'no registration', 10000);
console.log('browser: registered over WebSocket');
await waitLog('sent: 200', 'MESSAGE to bob not answered 200', 10000);
console.log('browser: MESSAGE to bob answered 200');
console.log('browser: ready');
await waitLog('message: ', 'no MESSAGE arrived', 20000);
const got = (await page.evaluate(() => window.log)).find((l) => l.startsWith('message: '));
if (got !== `message: ${expected}`) await fail(browser, `unexpected ${got}`);
console.log(`browser: MESSAGE received: ${got.slice(9)}`);
await page.evaluate(() => window.ua.stop());
await browser.close();
process.exit(0);
