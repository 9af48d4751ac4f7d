// An HTTP hello as a standard wasi:http component, in JavaScript
// (componentize-js; see README.md). `GET /throw` throws, to show what an
// uncaught exception becomes: the engine answers 500 itself but never
// returns, so the call's deadline ends the instance, and the host serves on.
addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (url.pathname === '/throw') {
    throw new Error('the JavaScript handler threw on purpose');
  }
  event.respondWith(
    new Response('Hello from JavaScript!', {
      headers: { 'content-type': 'text/plain' },
    }),
  );
});
