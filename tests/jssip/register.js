// A real browser softphone library (JsSIP) in Node, over the `ws` WebSocket client: registers
// with the registrar over SIP over WebSocket (RFC 7118), sends a MESSAGE on the same socket
// (the registrar answers 415 with Accept: it takes only GB28181 keepalive MESSAGEs), then exits
// without unregistering, so that the registrar sees the flow close. Usage: node register.js ws://127.0.0.1:PORT
'use strict';
global.WebSocket = require('ws');
const JsSIP = require('jssip');

const url = process.argv[2];
const socket = new JsSIP.WebSocketInterface(url);
const ua = new JsSIP.UA({
  sockets: [socket],
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
const timer = setTimeout(() => fail('timeout'), 10000);
ua.on('registrationFailed', (e) => fail(`registration failed: ${e.cause}`));
ua.on('registered', (e) => {
  console.log(`jssip: registered: ${e.response.status_code} ${e.response.reason_phrase}`);
  ua.sendMessage('sip:example.com', 'hello from JsSIP', {
    eventHandlers: {
      succeeded: () => fail('MESSAGE accepted by a registrar'),
      failed: (ev) => {
        const code = ev.response && ev.response.status_code;
        if (code !== 415) fail(`MESSAGE: expected 415, got ${ev.cause} ${code}`);
        console.log(`jssip: MESSAGE answered ${code} over the same WebSocket`);
        clearTimeout(timer);
        // Leave without unregistering: the registrar must drop the binding when the socket goes.
        process.exit(0);
      },
    },
  });
});
ua.start();
