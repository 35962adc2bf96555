#include "queue.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

void
entry_list_append (entry_list_t *list, entry_t *entry)
{
    assert (!entry->list);
    entry->list = list;
    entry->next = NULL;
    entry->prev = list->tail;
    if (list->tail)
        list->tail->next = entry;
    else
        list->head = entry;
    list->tail = entry;
    list->count++;
}

void
entry_list_prepend (entry_list_t *list, entry_t *entry)
{
    assert (!entry->list);
    entry->list = list;
    entry->prev = NULL;
    entry->next = list->head;
    if (list->head)
        list->head->prev = entry;
    else
        list->tail = entry;
    list->head = entry;
    list->count++;
}

void
entry_list_remove (entry_t *entry)
{
    entry_list_t *list = entry->list;
    if (!list)
        return;
    if (entry->prev)
        entry->prev->next = entry->next;
    else
        list->head = entry->next;
    if (entry->next)
        entry->next->prev = entry->prev;
    else
        list->tail = entry->prev;
    list->count--;
    entry->list = NULL;
    entry->prev = entry->next = NULL;
}

void
queue_push (queue_t *self, entry_t *entry)
{
    assert (entry->priority >= 0 && entry->priority < QUEUE_PRIORITIES);
    entry_list_append (&self->levels[entry->priority], entry);
    entry->state = ENTRY_QUEUED;
    self->count++;
}

void
queue_push_front (queue_t *self, entry_t *entry)
{
    entry_list_prepend (&self->levels[entry->priority], entry);
    entry->state = ENTRY_QUEUED;
    self->count++;
}

entry_t *
queue_pop (queue_t *self)
{
    for (int level = QUEUE_PRIORITIES - 1; level >= 0; level--) {
        entry_t *entry = self->levels[level].head;
        if (entry) {
            entry_list_remove (entry);
            self->count--;
            return entry;
        }
    }
    return NULL;
}

entry_t *
queue_peek (queue_t *self)
{
    int level = queue_top_priority (self);
    return level >= 0 ? self->levels[level].head : NULL;
}

int
queue_top_priority (queue_t *self)
{
    for (int level = QUEUE_PRIORITIES - 1; level >= 0 && self->count > 0; level--)
        if (self->levels[level].head)
            return level;
    return -1;
}

bool
queue_remove (queue_t *self, entry_t *entry)
{
    if (entry->list != &self->levels[entry->priority])
        return false;
    entry_list_remove (entry);
    self->count--;
    return true;
}

void
queue_test (bool verbose)
{
    if (verbose)
        printf (" * queue: ");
    queue_t queue;
    memset (&queue, 0, sizeof queue);
    entry_t entries[6];
    memset (entries, 0, sizeof entries);
    int priorities[6] = { 5, 9, 0, 5, 9, 3 };
    for (int i = 0; i < 6; i++) {
        entries[i].priority = priorities[i];
        queue_push (&queue, &entries[i]);
    }
    assert (queue.count == 6);
    assert (queue_remove (&queue, &entries[3]));
    assert (!queue_remove (&queue, &entries[3]));
    assert (queue.count == 5);
    // Highest priority first, FIFO within a priority.
    entry_t *expected[] = { &entries[1], &entries[4], &entries[0], &entries[5], &entries[2] };
    for (int i = 0; i < 5; i++) {
        assert (queue_peek (&queue) == expected[i] && queue.count == (size_t) (5 - i));
        assert (queue_pop (&queue) == expected[i]);
    }
    assert (queue_pop (&queue) == NULL && queue_peek (&queue) == NULL);
    assert (queue.count == 0);
    assert (queue_top_priority (&queue) == -1);
    queue_push (&queue, &entries[0]);
    queue_push_front (&queue, &entries[3]);
    assert (queue_top_priority (&queue) == 5);
    assert (queue_pop (&queue) == &entries[3]);
    assert (queue_pop (&queue) == &entries[0]);
    if (verbose)
        printf ("OK\n");
}
