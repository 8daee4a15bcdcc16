// kafkajs over SASL_SSL: produce, consume, or connect.
//
// usage: node sasl_client.js MODE BOOTSTRAP TOPIC COUNT MECHANISM USER CA PARTITIONS
// The password is read from $SASL_PASSWORD; the certificate must name the bootstrap host.
// MODE produce: acks=all, record i to partition i % PARTITIONS; prints the number acknowledged.
// MODE consume: reads the topic from the beginning in a group; prints the number read
//               (stops at COUNT or after 30 s).
// MODE connect: asks for metadata; prints "connected" or "refused: ERROR" as kafkajs reports it.
const fs = require('fs')
const { Kafka, logLevel } = require('kafkajs')

const [mode, bootstrap, topic, count, mechanism, username, ca, partitions] = process.argv.slice(2)

function client () {
  return new Kafka({
    clientId: 'shadowlink-tests',
    brokers: [bootstrap],
    logLevel: logLevel.NOTHING,
    retry: { retries: 2 },
    ssl: { ca: [fs.readFileSync(ca, 'utf-8')] },
    sasl: { mechanism: mechanism.toLowerCase(), username, password: process.env.SASL_PASSWORD }
  })
}

async function produce () {
  const producer = client().producer({ allowAutoTopicCreation: false })
  await producer.connect()
  const messages = []
  for (let i = 0; i < Number(count); i++) {
    messages.push({ value: `value-${i}`, partition: i % Number(partitions) })
  }
  await producer.send({ topic, acks: -1, messages })
  await producer.disconnect()
  console.log(messages.length)
}

async function consume () {
  const consumer = client().consumer({ groupId: `sasl-js-${mechanism}` })
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  let seen = 0
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, 30000)
    consumer.run({
      eachMessage: async () => {
        seen += 1
        if (seen >= Number(count)) { clearTimeout(timer); resolve() }
      }
    })
  })
  await consumer.disconnect()
  console.log(seen)
}

async function connect () {
  const admin = client().admin()
  try {
    await admin.connect()
    await admin.fetchTopicMetadata({ topics: [topic] })
    console.log('connected')
  } catch (e) {
    console.log(`refused: ${e.name} ${e.type || ''} ${e.message}`)
  }
  await admin.disconnect()
}

const run = { produce, consume, connect }[mode]
run().then(() => process.exit(0)).catch((e) => { console.error(e); process.exit(1) })
