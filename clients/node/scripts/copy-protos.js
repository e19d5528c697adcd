#!/usr/bin/env node
'use strict';
// npm pack's prepack/postpack step: the package ships the repository's protos (protos/voicemesh), copied in
// at pack time and removed after, so there is one hand-edited copy: the repository's.
//   node scripts/copy-protos.js copy | clean

const fs = require('fs');
const path = require('path');

const PACKAGE = path.resolve(__dirname, '..');
const SOURCE = path.resolve(PACKAGE, '..', '..', 'protos', 'voicemesh');
const TARGET = path.join(PACKAGE, 'protos', 'voicemesh');

const action = process.argv[2];
if (action === 'copy') {
  if (!fs.existsSync(path.join(SOURCE, 'v1', 'agent.proto'))) {
    console.error(`copy-protos: no protos at ${SOURCE}; pack the package from a VoiceMesh checkout`);
    process.exit(1);
  }
  fs.rmSync(TARGET, { recursive: true, force: true });
  fs.cpSync(SOURCE, TARGET, { recursive: true, filter: (src) => fs.statSync(src).isDirectory() || src.endsWith('.proto') });
} else if (action === 'clean') {
  fs.rmSync(TARGET, { recursive: true, force: true });
} else {
  console.error('usage: node scripts/copy-protos.js copy|clean');
  process.exit(2);
}
