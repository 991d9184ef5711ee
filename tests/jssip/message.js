// JsSIP in Node (over the `ws` WebSocket client) as a browser softphone of the example proxy's
// domain: registers as alice over SIP over WebSocket (RFC 7118), sends a MESSAGE to bob (the
// `ua` example, registered over UDP) and expects 200, then prints "ready" and waits for a
// MESSAGE from the `ua` example, which the proxy delivers over alice's WebSocket flow (her
// Contact has an .invalid host, as browsers send it). Usage: node message.js ws://HOST:PORT TEXT
'use strict';
global.WebSocket = require('ws');
const JsSIP = require('jssip');

const [url, expected] = process.argv.slice(2);
const ua = new JsSIP.UA({
  sockets: [new JsSIP.WebSocketInterface(url)],
  uri: 'sip:alice@example.com',
  register: true,
  register_expires: 300,
  session_timers: false,
  user_agent: 'JsSIP-node-test',
});
const fail = (why) => {
  console.error(`jssip: FAILED: ${why}`);
  process.exit(1);
};
const timer = setTimeout(() => fail('timeout'), 20000);
ua.on('registrationFailed', (e) => fail(`registration failed: ${e.cause}`));
ua.on('newMessage', (e) => {
  if (e.originator !== 'remote') return;
  const body = e.request.body;
  const from = e.request.from.uri.toString();
  console.log(`jssip: MESSAGE from ${from}: ${body}`);
  if (body !== expected) fail(`expected "${expected}"`);
  clearTimeout(timer);
  ua.stop();
  setTimeout(() => process.exit(0), 200);
});
ua.on('registered', () => {
  console.log('jssip: registered over WebSocket');
  ua.sendMessage('sip:bob@example.com', 'hello bob from JsSIP', {
    eventHandlers: {
      succeeded: (ev) => {
        console.log(`jssip: MESSAGE to bob answered ${ev.response.status_code}`);
        console.log('jssip: ready');
      },
      failed: (ev) => fail(`MESSAGE to bob: ${ev.cause} ${ev.response && ev.response.status_code}`),
    },
  });
});
ua.start();
