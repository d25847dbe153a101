// A Node.js application's use of Redis, through ioredis from the npm registry, run by
// tests/test_resp_node.py against `kvstore serve`. Nothing here knows it is not Redis.
//
//   node ioredis_script.js <port> <protocol 2|3> [password]
//
// Exits 0 after printing one JSON line of what it checked; any failed assertion or
// error exits non-zero with the error on stderr.
"use strict";
const assert = require("node:assert/strict");
const Redis = require("ioredis");

async function main() {
  const [port, protocol, password] = process.argv.slice(2);
  const options = {
    host: "127.0.0.1",
    port: Number(port),
    protocol: Number(protocol),
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    lazyConnect: true,
  };
  if (Number(protocol) === 3) options.replyMapping = "resp3";
  if (password) options.password = password;
  const r = new Redis(options);
  await r.connect();
  const checked = [];
  const check = (name) => checked.push(name);

  // strings
  assert.equal(await r.set("node:greeting", "hello"), "OK");
  assert.equal(await r.get("node:greeting"), "hello");
  assert.equal(await r.set("node:greeting", "other", "NX"), null);
  assert.equal(await r.set("node:ttl", "v", "EX", 100), "OK");
  const ttl = await r.ttl("node:ttl");
  assert.ok(ttl > 90 && ttl <= 100, `ttl ${ttl}`);
  assert.equal(await r.incr("node:n"), 1);
  assert.equal(await r.incrby("node:n", 41), 42);
  assert.equal(await r.append("node:greeting", " world"), 11);
  assert.deepEqual(await r.mget("node:greeting", "node:missing", "node:n"), ["hello world", null, "42"]);
  assert.equal(await r.exists("node:greeting", "node:missing"), 1);
  const binary = Buffer.from([0, 255, 10, 13, 0x80]);
  await r.set("node:binary", binary);
  assert.deepEqual(await r.getBuffer("node:binary"), binary);
  check("strings");

  // hashes
  assert.equal(await r.hset("node:user", { name: "ada", lang: "en", visits: "1" }), 3);
  assert.equal(await r.hget("node:user", "name"), "ada");
  assert.equal(await r.hincrby("node:user", "visits", 2), 3);
  assert.deepEqual(await r.hgetall("node:user"), { name: "ada", lang: "en", visits: "3" });
  assert.equal(await r.hdel("node:user", "lang"), 1);
  assert.deepEqual((await r.hkeys("node:user")).sort(), ["name", "visits"]);
  check("hashes");

  // lists: an append log (RPUSH at the tail, LPOP/LTRIM at the head)
  assert.equal(await r.rpush("node:chat", "z", "a", "b"), 3);
  assert.equal(await r.rpush("node:chat", "c"), 4);
  assert.deepEqual(await r.lrange("node:chat", 0, -1), ["z", "a", "b", "c"]);
  assert.equal(await r.llen("node:chat"), 4);
  assert.equal(await r.lindex("node:chat", -1), "c");
  assert.equal(await r.lpop("node:chat"), "z");
  // a capped history: keep the last two
  assert.equal(await r.ltrim("node:chat", -2, -1), "OK");
  assert.deepEqual(await r.lrange("node:chat", 0, -1), ["b", "c"]);
  // what an append log cannot do atomically is refused, saying why
  await assert.rejects(r.lpush("node:chat", "y"), /LPUSH is not supported/);
  check("lists");

  // sets and sorted sets
  assert.equal(await r.sadd("node:tags", "x", "y", "x"), 2);
  assert.deepEqual((await r.smembers("node:tags")).sort(), ["x", "y"]);
  assert.equal(await r.zadd("node:board", 10, "ada", 20, "bob"), 2);
  // as Redis 7 answers: pairs of member and double under RESP3, a flat array under RESP2
  assert.deepEqual(
    await r.zrange("node:board", 0, -1, "WITHSCORES"),
    Number(protocol) === 3 ? [["ada", 10], ["bob", 20]] : ["ada", "10", "bob", "20"],
  );
  assert.equal(await r.zscore("node:board", "bob"), Number(protocol) === 3 ? 20 : "20");
  check("sets");

  // errors as Redis words them
  await assert.rejects(r.get("node:user"), /^ReplyError: WRONGTYPE/);
  await assert.rejects(r.call("NOSUCHCOMMAND"), /unknown command/);
  check("errors");

  // a pipeline: many commands in one write, replies in order
  const pipe = r.pipeline();
  for (let i = 0; i < 100; i++) pipe.set(`node:p:${i}`, String(i));
  pipe.get("node:p:7").incr("node:p:7").get("node:p:7");
  const replies = await pipe.exec();
  assert.equal(replies.length, 103);
  for (const [err] of replies) assert.equal(err, null);
  assert.deepEqual(replies.slice(100).map(([, v]) => v), ["7", 8, "8"]);
  check("pipeline");

  // MULTI/EXEC: queued, then run at once
  const tx = await r.multi().incr("node:counter").incr("node:counter").get("node:counter").exec();
  assert.deepEqual(tx, [[null, 1], [null, 2], [null, "2"]]);
  // a queued error: the transaction is refused as a whole (EXECABORT), nothing runs
  await assert.rejects(
    r.multi().set("node:never", "1").call("NOSUCHCOMMAND").exec(),
    /EXECABORT/,
  );
  assert.equal(await r.exists("node:never"), 0);
  // WATCH: a key changed by another client makes EXEC answer null
  const other = new Redis(options);
  await other.connect();
  await r.watch("node:counter");
  await other.incr("node:counter");
  assert.equal(await r.multi().set("node:counter", "100").exec(), null);
  assert.equal(await r.get("node:counter"), "3");
  check("transactions");

  // pub/sub between two connections of the same server
  const sub = new Redis(options);
  await sub.connect();
  const got = new Promise((resolve) => sub.on("message", (channel, message) => resolve([channel, message])));
  await sub.subscribe("node:news");
  assert.equal(await other.publish("node:news", "hi"), 1);
  assert.deepEqual(await got, ["node:news", "hi"]);
  check("pubsub");

  // the whole keyspace this script wrote, for the Python side to compare with the store
  const keys = [];
  let cursor = "0";
  do {
    const [next, batch] = await r.scan(cursor, "MATCH", "node:*", "COUNT", 100);
    keys.push(...batch);
    cursor = next;
  } while (cursor !== "0");
  check("scan");

  await Promise.all([r.quit(), other.quit(), sub.quit()]);
  console.log(JSON.stringify({ checked, keys: keys.sort(), protocol: Number(protocol) }));
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : String(err));
  process.exit(1);
});
