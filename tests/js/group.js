// Two kafkajs members of one group, subscribed by pattern, read a set of topics together.
// Prints one JSON summary: records per member, partitions per member after the last
// rebalance, distinct (topic, partition, offset) seen, and duplicates. Offsets are committed (kafkajs autocommit) before the members leave.
//
// usage: node group.js BOOTSTRAP GROUP PATTERN EXPECTED [IDLE_MS] [PARTITIONS]
// With PARTITIONS, the run also waits until the members' latest assignments add up to it
// (a member that has not yet rejoined after a rebalance still counts its old share).
const { Kafka, logLevel } = require('kafkajs')

const [bootstrap, group, pattern, expected, idleMs, partitions] = process.argv.slice(2)
const idle = Number(idleMs || 3000)

async function main () {
  const kafka = new Kafka({ clientId: 'shadowlink-tests', brokers: [bootstrap], logLevel: logLevel.ERROR })
  const seen = new Map()
  const perMember = [0, 0]
  // Partitions each member holds after its latest rebalance.
  const assigned = [0, 0]
  let last = Date.now()
  const members = [0, 1].map(() => kafka.consumer({ groupId: group, sessionTimeout: 10000, heartbeatInterval: 500 }))
  for (const [i, consumer] of members.entries()) {
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      assigned[i] = Object.values(e.payload.memberAssignment).reduce((n, ps) => n + ps.length, 0)
    })
    await consumer.connect()
    await consumer.subscribe({ topics: [new RegExp(pattern)], fromBeginning: true })
    await consumer.run({
      autoCommitInterval: 200,
      eachMessage: async ({ topic, partition, message }) => {
        const key = `${topic}/${partition}/${message.offset}`
        seen.set(key, (seen.get(key) || 0) + 1)
        perMember[i] += 1
        last = Date.now()
      }
    })
  }
  const deadline = Date.now() + 60000
  while (Date.now() < deadline) {
    const shared = !partitions || assigned[0] + assigned[1] === Number(partitions)
    const settled = assigned[0] > 0 && assigned[1] > 0 && shared
    if (seen.size >= Number(expected) && settled && Date.now() - last > idle) break
    if (Number(expected) === 0 && Date.now() - last > idle) break
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  // Taken before leaving: the first member's LeaveGroup hands everything to the second.
  const held = [...assigned]
  for (const consumer of members) await consumer.disconnect()
  const duplicates = [...seen.values()].filter((n) => n > 1).length
  console.log(JSON.stringify({ perMember, assigned: held, distinct: seen.size, duplicates }))
}

main().catch((e) => { console.error(e); process.exit(1) })
