package acl

import (
	"container/list"
	"sync"
	"time"
)

// DefaultCacheSize is how many sql answers Rules keeps when
// RulesOptions.CacheSize is 0.
const DefaultCacheSize = 10000

// answerCache keeps sql rule answers for a TTL, bounded in size by least
// recent use (LRU). There is no sweeper goroutine: an expired entry is
// dropped when it is looked up, or evicted like any other once it is the
// least recently used; either way the size bound holds.
// Entries are grouped by channel pattern so that Invalidate drops exactly
// the answers of the affected patterns.
type answerCache struct {
	mu        sync.Mutex // guards everything below
	max       int
	lru       *list.List                       // of *cacheEntry, most recent first
	byKey     map[string]*list.Element         // key → element of lru
	byChannel map[int]map[string]*list.Element // channel pattern index → its entries
	gen       map[int]uint64                   // channel pattern index → invalidations so far
}

type cacheEntry struct {
	key     string
	channel int
	allowed bool
	expires time.Time
}

func newAnswerCache(max int) *answerCache {
	return &answerCache{
		max:       max,
		lru:       list.New(),
		byKey:     map[string]*list.Element{},
		byChannel: map[int]map[string]*list.Element{},
		gen:       map[int]uint64{},
	}
}

// get returns the live answer for key.
func (c *answerCache) get(key string, now time.Time) (allowed, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byKey[key]
	if !ok {
		return false, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.remove(el)
		return false, false
	}
	c.lru.MoveToFront(el)
	return e.allowed, true
}

// generation is read before a query; put refuses the answer when the
// channel was invalidated meanwhile, since the query may have read the
// rows as they were before the change.
func (c *answerCache) generation(channel int) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen[channel]
}

// put stores an answer unless channel was invalidated since gen.
func (c *answerCache) put(key string, channel int, allowed bool, expires time.Time, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen[channel] != gen {
		return
	}
	if el, ok := c.byKey[key]; ok {
		c.remove(el)
	}
	el := c.lru.PushFront(&cacheEntry{key: key, channel: channel, allowed: allowed, expires: expires})
	c.byKey[key] = el
	if c.byChannel[channel] == nil {
		c.byChannel[channel] = map[string]*list.Element{}
	}
	c.byChannel[channel][key] = el
	for c.lru.Len() > c.max {
		c.remove(c.lru.Back())
	}
}

// invalidate drops every answer of channel.
func (c *answerCache) invalidate(channel int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen[channel]++
	for _, el := range c.byChannel[channel] {
		c.remove(el)
	}
}

// len is the number of entries, expired ones included.
func (c *answerCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

func (c *answerCache) remove(el *list.Element) {
	e := el.Value.(*cacheEntry)
	c.lru.Remove(el)
	delete(c.byKey, e.key)
	if m := c.byChannel[e.channel]; m != nil {
		delete(m, e.key)
		if len(m) == 0 {
			delete(c.byChannel, e.channel)
		}
	}
}
