// A key-value counter as a standard wasi:http + wasi:keyvalue component, in
// JavaScript: `GET /PATH` increments the counter PATH in the default bucket
// (the actor's default lattice:keyvalue link) and answers {"count": N}.
import { open } from 'wasi:keyvalue/store@0.2.0-draft';
import { increment } from 'wasi:keyvalue/atomics@0.2.0-draft';

addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  const key = url.pathname.replace(/^\/+/, '') || 'root';
  let body;
  try {
    const bucket = open('');
    body = JSON.stringify({ count: Number(increment(bucket, key, 1n)) });
  } catch (e) {
    const why = e.payload ? JSON.stringify(e.payload) : String(e);
    event.respondWith(new Response(`key-value error: ${why}\n`, { status: 500 }));
    return;
  }
  event.respondWith(
    new Response(body, { headers: { 'content-type': 'application/json' } }),
  );
});
