// Start s3rver (filesystem backend) on 127.0.0.1 and print {"port": N} once listening.
// usage: node s3rver_main.js DIRECTORY [PORT] [BUCKET ...]
const path = require('path');
const S3rver = require(path.join(process.env.S3RVER_MODULES || '', 's3rver'));
const [dir, port, ...buckets] = process.argv.slice(2);
const server = new S3rver({
  address: '127.0.0.1',
  port: Number(port || 0),
  directory: dir,
  silent: true,
  allowMismatchedSignatures: true,
  configureBuckets: buckets.map(name => ({ name })),
});
server.run().then(({ port }) => {
  process.stdout.write(JSON.stringify({ port }) + '\n');
}).catch(err => { console.error(err); process.exit(1); });
